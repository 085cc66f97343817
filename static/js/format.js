/* Shared helpers of MinhOS's page modules: building DOM from text (never from HTML strings, so a message can
   never inject markup), and writing times the way every page does (UTC wall clock, plus how long ago). */

/** h("td", {class: "n", title: "…", dataset: {side: "long"}}, "text", childNode, …): an element. */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replace a container's children. */
export function fill(node, children) {
  if (node) node.replaceChildren(...children.filter(Boolean));
}

export function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

export function show(node, visible) {
  if (node) node.hidden = !visible;
}

function pad(n) { return (n < 10 ? "0" : "") + n; }

/** "2024-05-06 13:31:02 UTC" from an ISO time. */
export function utc(iso, { seconds = true } = {}) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  const day = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  const time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + (seconds ? ":" + pad(d.getUTCSeconds()) : "");
  return day + " " + time + " UTC";
}

/** "42 s ago", "3 min ago", "2.5 h ago", "4.1 d ago". */
export function ago(iso, nowMs = Date.now()) {
  if (!iso) return "";
  const seconds = Math.max(0, (nowMs - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 90 * 60) return Math.round(seconds / 60) + " min ago";
  if (seconds < 48 * 3600) return (seconds / 3600).toFixed(1) + " h ago";
  return (seconds / 86400).toFixed(1) + " d ago";
}

/** Plotly's date strings: UTC wall clock (Plotly has no time zones). */
export function plotTime(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") : null;
}

/** Refresh every <time data-ago> under `root`: "UTC time · n s ago". */
export function tickAges(root = document, nowMs = Date.now()) {
  root.querySelectorAll("time[data-ago]").forEach(function (node) {
    const iso = node.getAttribute("datetime");
    if (!iso) return;
    setText(node, utc(iso, { seconds: false }) + " · " + ago(iso, nowMs));
    node.title = utc(iso);
  });
}
