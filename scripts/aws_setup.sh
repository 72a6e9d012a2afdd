#!/usr/bin/env bash
# One-time AWS setup for cluster.yaml: the results bucket and the two instance profiles it names.
#
#   scripts/aws_setup.sh BUCKET [REGION]      (REGION defaults to us-east-1, cluster.yaml's)
#
# Creates (skipping what already exists):
#   s3://BUCKET                  private (public access blocked), for --results s3://BUCKET/...
#   role+profile dlgsweep-worker read/write objects in BUCKET, nothing else
#   role+profile dlgsweep-head   the same, plus AmazonEC2FullAccess (the autoscaler launches and
#                                ends workers) and iam:PassRole on dlgsweep-worker only
# Needs the aws CLI with credentials allowed to create buckets, roles and instance profiles.
# Afterwards `ray up cluster.yaml` also needs, for whoever runs it: EC2, iam:PassRole on both
# roles, ssm:GetParameters (the AMI is resolved from a public SSM parameter).
set -euo pipefail

BUCKET="${1:?usage: $0 BUCKET [REGION]}"
REGION="${2:-us-east-1}"
export AWS_DEFAULT_REGION="$REGION"
ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"

if aws s3api head-bucket --bucket "$BUCKET" 2>/dev/null; then
  echo "bucket $BUCKET exists"
else
  if [[ "$REGION" == us-east-1 ]]; then
    aws s3api create-bucket --bucket "$BUCKET"
  else
    aws s3api create-bucket --bucket "$BUCKET" \
      --create-bucket-configuration "LocationConstraint=$REGION"
  fi
  echo "created bucket $BUCKET"
fi
aws s3api put-public-access-block --bucket "$BUCKET" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true

TRUST='{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
S3_POLICY="{\"Version\":\"2012-10-17\",\"Statement\":[
{\"Effect\":\"Allow\",\"Action\":[\"s3:ListBucket\",\"s3:GetBucketLocation\"],
 \"Resource\":\"arn:aws:s3:::$BUCKET\"},
{\"Effect\":\"Allow\",\"Action\":[\"s3:GetObject\",\"s3:PutObject\",\"s3:DeleteObject\",
 \"s3:AbortMultipartUpload\",\"s3:ListMultipartUploadParts\"],
 \"Resource\":\"arn:aws:s3:::$BUCKET/*\"}]}"
PASS_POLICY="{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",
\"Action\":\"iam:PassRole\",\"Resource\":\"arn:aws:iam::$ACCOUNT:role/dlgsweep-worker\"}]}"

role_with_profile() {  # NAME: role trusted by EC2 + instance profile of the same name
  local name="$1"
  aws iam get-role --role-name "$name" >/dev/null 2>&1 \
    || aws iam create-role --role-name "$name" --assume-role-policy-document "$TRUST" >/dev/null
  aws iam put-role-policy --role-name "$name" --policy-name dlgsweep-results \
    --policy-document "$S3_POLICY"
  if ! aws iam get-instance-profile --instance-profile-name "$name" >/dev/null 2>&1; then
    aws iam create-instance-profile --instance-profile-name "$name" >/dev/null
    aws iam add-role-to-instance-profile --instance-profile-name "$name" --role-name "$name"
  fi
  echo "role and instance profile $name ready"
}

role_with_profile dlgsweep-worker
role_with_profile dlgsweep-head
aws iam attach-role-policy --role-name dlgsweep-head \
  --policy-arn arn:aws:iam::aws:policy/AmazonEC2FullAccess
aws iam put-role-policy --role-name dlgsweep-head --policy-name dlgsweep-pass-worker-role \
  --policy-document "$PASS_POLICY"

echo "done: ray up cluster.yaml, then --results s3://$BUCKET/dlgsweep"
echo "(new instance profiles can take ~15 s before EC2 accepts them)"
