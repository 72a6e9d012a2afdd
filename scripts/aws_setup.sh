#!/usr/bin/env bash
# One-time AWS setup for cluster.yaml: the results bucket and the two instance profiles it names.
#
#   scripts/aws_setup.sh BUCKET [REGION]      (REGION defaults to us-east-1, cluster.yaml's)
#
# Creates or updates (idempotent):
#   s3://BUCKET                   private (public access blocked), for --results s3://BUCKET/...
#   role+profile dlgsweep-worker  aws_iam/results-bucket.json: list BUCKET, read/write its objects
#   role+profile dlgsweep-head    the same, plus aws_iam/head-autoscaler.json: what Ray's
#                                 autoscaler calls to run the GPU workers (describe, launch and
#                                 tag instances; retag and terminate only instances tagged
#                                 ray-cluster-name=dlgsweep), iam:PassRole on dlgsweep-worker
#                                 only, ssm:GetParameters on the one public AMI parameter that
#                                 cluster.yaml's ImageId resolves
#   the EC2 Spot service-linked role, so spot workers (cluster.yaml's gpu_spot) can launch
# Every policy is inline and names BUCKET, this account, REGION and the cluster; nothing grants
# ec2:* or s3:*. Re-run after changing the bucket or region: the policies are replaced.
#
# Needs the aws CLI with credentials allowed to create buckets, roles and instance profiles.
# `ray up cluster.yaml` itself then needs, for whoever runs it: EC2 (instances, key pairs,
# security groups, describe), iam:GetInstanceProfile, iam:PassRole on both roles, and
# ssm:GetParameters on the AMI parameter.
set -euo pipefail

BUCKET="${1:?usage: $0 BUCKET [REGION]}"
REGION="${2:-us-east-1}"
CLUSTER="${DLGSWEEP_CLUSTER_NAME:-dlgsweep}"  # cluster_name in cluster.yaml
HEAD=dlgsweep-head
WORKER=dlgsweep-worker
IAM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/aws_iam"
export AWS_DEFAULT_REGION="$REGION"
ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"

# aws_iam/NAME.json with its placeholders filled in
policy() {
  sed -e "s/BUCKET/$BUCKET/g" -e "s/ACCOUNT/$ACCOUNT/g" -e "s/REGION/$REGION/g" \
    -e "s/CLUSTER/$CLUSTER/g" -e "s/WORKER_ROLE/$WORKER/g" "$IAM_DIR/$1.json"
}

if aws s3api head-bucket --bucket "$BUCKET" 2>/dev/null; then
  echo "bucket $BUCKET exists"
else
  if [[ "$REGION" == us-east-1 ]]; then
    aws s3api create-bucket --bucket "$BUCKET" >/dev/null
  else
    aws s3api create-bucket --bucket "$BUCKET" \
      --create-bucket-configuration "LocationConstraint=$REGION" >/dev/null
  fi
  echo "created bucket $BUCKET"
fi
aws s3api put-public-access-block --bucket "$BUCKET" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true

role_with_profile() {  # NAME: a role EC2 may assume + the instance profile of the same name
  local name="$1"
  aws iam get-role --role-name "$name" >/dev/null 2>&1 \
    || aws iam create-role --role-name "$name" \
      --assume-role-policy-document "$(policy trust)" >/dev/null
  aws iam put-role-policy --role-name "$name" --policy-name dlgsweep-results \
    --policy-document "$(policy results-bucket)"
  if ! aws iam get-instance-profile --instance-profile-name "$name" >/dev/null 2>&1; then
    aws iam create-instance-profile --instance-profile-name "$name" >/dev/null
    aws iam add-role-to-instance-profile --instance-profile-name "$name" --role-name "$name"
  fi
  echo "role and instance profile $name ready"
}

role_with_profile "$WORKER"
role_with_profile "$HEAD"
aws iam put-role-policy --role-name "$HEAD" --policy-name dlgsweep-autoscaler \
  --policy-document "$(policy head-autoscaler)"
# earlier versions of this script attached the broad managed policy; take it off
aws iam detach-role-policy --role-name "$HEAD" \
  --policy-arn arn:aws:iam::aws:policy/AmazonEC2FullAccess >/dev/null 2>&1 || true
aws iam delete-role-policy --role-name "$HEAD" \
  --policy-name dlgsweep-pass-worker-role >/dev/null 2>&1 || true

# Spot instances need this service-linked role once per account (exists already: fine).
aws iam create-service-linked-role --aws-service-name spot.amazonaws.com >/dev/null 2>&1 || true

echo "done: scripts/build_dist.sh && ray up cluster.yaml, then --results s3://$BUCKET/dlgsweep"
echo "(new instance profiles can take ~15 s before EC2 accepts them)"
