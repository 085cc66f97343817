/* The look every Plotly figure of MinhOS shares (dark, dense, system fonts), so the page modules only say what
   they plot. Plotly.js itself is the locally served window.Plotly. */

export const COLORS = {
  up: "#26a69a", down: "#ef5350", warn: "#e0a526", accent: "#4f8cff", text: "#d7dce5", muted: "#7d8799",
  grid: "#1b2130", axis: "#222938", bg: "#11151d", violet: "#a78bfa", cyan: "#22d3ee",
};
export const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
export const CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };

function axis(extra) {
  return Object.assign({
    gridcolor: COLORS.grid, linecolor: COLORS.axis, zerolinecolor: COLORS.axis, tickfont: { size: 10 },
    automargin: true,
  }, extra || {});
}

/** A layout with the shared look; `extra` wins, and its xaxis / yaxis are merged into the shared axes. */
export function layout(extra = {}) {
  const { xaxis, yaxis, yaxis2, ...rest } = extra;
  const out = Object.assign({
    paper_bgcolor: COLORS.bg, plot_bgcolor: COLORS.bg, font: { family: FONT, size: 11, color: COLORS.text },
    margin: { l: 44, r: 12, t: 28, b: 30 }, showlegend: true, hovermode: "x unified",
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 10 }, bgcolor: "rgba(0,0,0,0)" },
    title: undefined,
  }, rest);
  out.xaxis = axis(xaxis);
  out.yaxis = axis(yaxis);
  if (yaxis2) out.yaxis2 = axis(Object.assign({ overlaying: "y", side: "right", showgrid: false }, yaxis2));
  return out;
}

export function hline(y, color, dash = "dot", label = "") {
  return {
    type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y, y1: y,
    line: { color, width: 1, dash }, name: label,
  };
}

export function vline(x, color, dash = "dot") {
  return { type: "line", yref: "paper", y0: 0, y1: 1, xref: "x", x0: x, x1: x, line: { color, width: 1, dash } };
}

/** Draw (or redraw) a figure and mark its element data-ready="true" once Plotly has. */
export function draw(node, data, figureLayout) {
  if (!node || !window.Plotly) return Promise.resolve();
  return window.Plotly.react(node, data, figureLayout, CONFIG).then(function () {
    node.dataset.ready = "true";
  });
}
