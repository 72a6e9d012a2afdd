// The explorer: a table of trials, parallel coordinates, the selected trial's images and curve.
// Plain JavaScript, no library: the page opens from disk with no network.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const rows = data.rows;
  const axes = data.axes;
  const SVG = "http://www.w3.org/2000/svg";
  const filters = {};
  let sortKey = "psnr_mean";
  let sortDir = -1;
  let selected = null;
  const MAX_TABLE_ROWS = 3000;

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(2) : v.toFixed(3);
    }
    return String(v);
  }
  function levelOf(v) { return v === null || v === undefined ? "unknown" : String(v); }
  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a) < String(b) ? -1 : 1;
  }
  function levels(axis) {
    const values = Array.from(new Set(rows.map((r) => r[axis])));
    values.sort(compare);
    return values.map(levelOf);
  }
  const axisLevels = {};
  axes.forEach((a) => { axisLevels[a] = levels(a); });

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function visible() {
    return rows.filter((r) => Object.entries(filters).every(([a, v]) => !v || levelOf(r[a]) === v));
  }

  function buildFilters() {
    const box = document.getElementById("filters");
    ["status", ...axes].forEach((axis) => {
      const values = axis === "status" ? levels("status") : axisLevels[axis];
      const label = el("label", {}, axis.replace(/_/g, " ") + " ");
      const select = el("select", { "data-axis": axis });
      select.appendChild(el("option", { value: "" }, "all"));
      values.forEach((v) => select.appendChild(el("option", { value: v }, v)));
      select.addEventListener("change", () => { filters[axis] = select.value; render(); });
      label.appendChild(select);
      box.appendChild(label);
    });
  }

  function columns() { return ["trial_key", "status", ...axes, ...data.scores]; }

  function renderTable(shown) {
    const head = document.querySelector("#trials thead");
    const body = document.querySelector("#trials tbody");
    head.innerHTML = "";
    body.innerHTML = "";
    const tr = el("tr");
    columns().forEach((c) => {
      const th = el("th", { "data-key": c }, c.replace(/_/g, " ") + (c === sortKey ? (sortDir > 0 ? " \u25b2" : " \u25bc") : ""));
      th.addEventListener("click", () => {
        sortDir = c === sortKey ? -sortDir : (data.scores.includes(c) ? -1 : 1);
        sortKey = c;
        render();
      });
      tr.appendChild(th);
    });
    head.appendChild(tr);
    const sorted = shown.slice().sort((a, b) => sortDir * compare(a[sortKey], b[sortKey]));
    sorted.slice(0, MAX_TABLE_ROWS).forEach((r) => {
      const row = el("tr", { "data-key": r.trial_key, class: "status-" + r.status + (r.trial_key === selected ? " selected" : "") });
      columns().forEach((c) => {
        const value = c === "trial_key" ? r[c].slice(0, 10) : fmt(r[c]);
        row.appendChild(el("td", {}, value));
      });
      row.addEventListener("click", () => select(r.trial_key));
      body.appendChild(row);
    });
    const count = document.getElementById("count");
    count.textContent = `${shown.length} of ${rows.length} trials shown` +
      (shown.length > MAX_TABLE_ROWS ? ` (table: first ${MAX_TABLE_ROWS}; filter to see the rest)` : "");
  }

  function color(t) {
    // blue (low PSNR) -> yellow (high), t in [0, 1]
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const x = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    const c = stops[i].map((s, k) => Math.round(s + f * (stops[i + 1][k] - s)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function renderParallel(shown) {
    const svg = document.getElementById("parallel");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const width = svg.clientWidth || 700;
    const height = svg.clientHeight || 340;
    const dims = [...axes, "psnr_mean"];
    const left = 40, right = 50, top = 28, bottom = 24;
    const step = dims.length > 1 ? (width - left - right) / (dims.length - 1) : 0;
    const psnr = rows.map((r) => r.psnr_mean).filter((v) => typeof v === "number");
    const lo = psnr.length ? Math.min(...psnr) : 0;
    const hi = psnr.length ? Math.max(...psnr) : 1;
    function y(dim, value) {
      if (dim === "psnr_mean") {
        return top + (height - top - bottom) * (1 - (value - lo) / ((hi - lo) || 1));
      }
      const lv = axisLevels[dim];
      const i = lv.indexOf(levelOf(value));
      return top + (height - top - bottom) * (lv.length > 1 ? i / (lv.length - 1) : 0.5);
    }
    dims.forEach((dim, k) => {
      const x = left + k * step;
      const g = svgEl("g", { class: "axis" });
      g.appendChild(svgEl("line", { x1: x, x2: x, y1: top, y2: height - bottom }));
      g.appendChild(svgEl("text", { x: x, y: top - 12, "text-anchor": "middle", "font-weight": "bold" }, dim.replace(/_/g, " ")));
      const ticks = dim === "psnr_mean" ? [lo, (lo + hi) / 2, hi] : axisLevels[dim];
      ticks.forEach((t) => {
        const ty = dim === "psnr_mean" ? y(dim, t) : y(dim, t === "unknown" ? null : rows.find((r) => levelOf(r[dim]) === t)[dim]);
        g.appendChild(svgEl("text", { x: x + 4, y: ty + 3 }, dim === "psnr_mean" ? t.toFixed(1) + " dB" : String(t).slice(0, 16)));
      });
      svg.appendChild(g);
    });
    const drawn = shown.filter((r) => typeof r.psnr_mean === "number");
    drawn.sort((a, b) => (a.trial_key === selected) - (b.trial_key === selected));
    drawn.forEach((r) => {
      const points = dims.map((dim, k) => `${left + k * step},${y(dim, dim === "psnr_mean" ? r.psnr_mean : r[dim])}`);
      const path = svgEl("polyline", {
        points: points.join(" "),
        class: "pc-line" + (r.trial_key === selected ? " selected" : ""),
        stroke: color((r.psnr_mean - lo) / ((hi - lo) || 1)),
        "data-key": r.trial_key,
      });
      const title = svgEl("title", {}, `${r.trial_key}: ${fmt(r.psnr_mean)} dB`);
      path.appendChild(title);
      path.addEventListener("click", () => select(r.trial_key));
      svg.appendChild(path);
    });
  }

  function curveSvg(xs, ys, label, log) {
    const svg = svgEl("svg", { width: 300, height: 120 });
    const values = ys.map((v) => (log ? (v > 0 ? Math.log10(v) : null) : v));
    const pts = xs.map((x, i) => [x, values[i]]).filter((p) => p[1] !== null && isFinite(p[1]));
    svg.appendChild(svgEl("text", { x: 4, y: 12, "font-size": 11 }, label));
    if (!pts.length) return svg;
    const x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    const y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
    const X = (x) => 40 + 250 * (x - x0) / ((x1 - x0) || 1);
    const Y = (y) => 105 - 85 * (y - y0) / ((y1 - y0) || 1);
    svg.appendChild(svgEl("polyline", { class: "curve", points: pts.map((p) => `${X(p[0])},${Y(p[1])}`).join(" ") }));
    svg.appendChild(svgEl("text", { x: 2, y: 108, "font-size": 9 }, fmt(log ? Math.pow(10, y0) : y0)));
    svg.appendChild(svgEl("text", { x: 2, y: 24, "font-size": 9 }, fmt(log ? Math.pow(10, y1) : y1)));
    svg.appendChild(svgEl("text", { x: 40, y: 118, "font-size": 9 }, `iteration ${x0}`));
    svg.appendChild(svgEl("text", { x: 290, y: 118, "font-size": 9, "text-anchor": "end" }, String(x1)));
    return svg;
  }

  function renderDetail(r) {
    const box = document.getElementById("detail");
    box.innerHTML = "";
    if (!r) { box.appendChild(el("p", { class: "note" }, "Click a trial.")); return; }
    box.appendChild(el("h3", {}, `trial ${r.trial_key}` + (r.sweep ? ` (${r.sweep}${r.variant ? "/" + r.variant : ""})` : "")));
    if (r.status === "error") box.appendChild(el("pre", {}, r.error || "error"));
    const pics = el("div", { id: "images" });
    document.body.dataset.imagesLoaded = "0";
    [["ground truth", r.images[0]], ["reconstruction", r.images[1]]].forEach(([name, src]) => {
      const fig = el("figure", { style: "display:inline-block;margin:0 0.6rem 0 0" });
      if (src) {
        const img = el("img", { alt: name, src: src, "data-role": name.replace(" ", "-") });
        img.addEventListener("load", () => {
          document.body.dataset.imagesLoaded = String(Number(document.body.dataset.imagesLoaded || 0) + 1);
        });
        fig.appendChild(img);
      } else {
        fig.appendChild(el("p", { class: "note" }, "no image"));
      }
      fig.appendChild(el("figcaption", {}, name));
      pics.appendChild(fig);
    });
    box.appendChild(pics);
    if (r.curve_iteration && r.curve_iteration.length) {
      const curves = el("div", { id: "curves" });
      curves.appendChild(curveSvg(r.curve_iteration, r.curve_psnr || [], "PSNR (dB) over iterations", false));
      curves.appendChild(curveSvg(r.curve_iteration, r.curve_grad_loss || [], "gradient loss (log scale)", true));
      box.appendChild(curves);
    }
    function fields(keys) {
      const table = el("table");
      keys.forEach((k) => {
        if (r[k] === undefined) return;
        const tr = el("tr");
        tr.appendChild(el("td", {}, k));
        tr.appendChild(el("td", {}, fmt(r[k])));
        table.appendChild(tr);
      });
      return table;
    }
    box.appendChild(fields([...data.details, ...axes]));
    const rest = el("details");
    rest.appendChild(el("summary", {}, "every config field"));
    rest.appendChild(fields(data.config));
    box.appendChild(rest);
  }

  function select(key) {
    selected = key;
    document.body.dataset.selected = key;
    if (history.replaceState) history.replaceState(null, "", "#trial=" + key);
    render();
  }

  function render() {
    const shown = visible();
    renderTable(shown);
    renderParallel(shown);
    renderDetail(rows.find((r) => r.trial_key === selected));
  }

  buildFilters();
  const match = /trial=([\w-]+)/.exec(location.hash);
  if (match && rows.some((r) => r.trial_key === match[1])) selected = match[1];
  if (selected) document.body.dataset.selected = selected;
  render();
  window.addEventListener("resize", () => renderParallel(visible()));
  document.body.dataset.ready = String(rows.length);
})();
