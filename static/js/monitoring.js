/* The monitoring page: the health score and what sizing does with it, its breakdown, the series over the
   snapshots, the reliability diagram, the live metrics per window, drift per input, operations and the alerts.
   The server renders it all; this module draws the Plotly figures, switches the window tabs, and when the
   market's socket says a snapshot was taken (or an alert changed) reads /monitoring/data/ and renders the sections
   again from the same display rows the server used (monitoring/page.py). */
import { ago, fill, h, plotTime, setText, show, tickAges, utc } from "./format.js";
import { connectMarket } from "./live.js";
import { COLORS, draw, hline, layout, vline } from "./plot_theme.js";

const root = document.getElementById("monitoring");
const initialEl = document.getElementById("monitoring-initial");
const picker = document.getElementById("market-picker");
if (picker) {
  picker.addEventListener("change", function () {
    if (picker.requestSubmit) picker.requestSubmit(); else picker.submit();
  });
}
if (root && initialEl) start(JSON.parse(initialEl.textContent));

function start(initial) {
  const $ = function (id) { return document.getElementById(id); };
  const RANGE_MS = { "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3 };
  const state = {
    view: initial.view, alerts: initial.alerts, series: (initial.view && initial.view.series) || null,
    canAcknowledge: initial.can_acknowledge, window: "count", loginLost: false,
  };
  const BAND_COLOR = { full: COLORS.up, scaled: COLORS.warn, blocked: COLORS.down };
  const DRIFT_COLOR = { stable: COLORS.up, moderate: COLORS.warn, significant: COLORS.down };

  // ---- at a glance -------------------------------------------------------------------------------------------

  function renderHead(view) {
    const s = view.snapshot;
    const card = $("health-card");
    const band = s ? s.health.band : "";
    card.className = "health-card band-" + (band || "none");
    card.dataset.band = band;
    setText($("health-score"), s ? s.health.text : "—");
    setText($("health-action"), s ? s.health.action : "Not monitored yet");
    setText($("health-explain"), s ? s.health.explain : "");
    const needle = $("gauge-needle");
    if (s && s.health.score !== null) needle.style.left = Math.max(0, Math.min(100, s.health.score)) + "%";
    show(needle, !!s);
    const version = $("health-version");
    if (s) {
      setText(version, "v" + s.version);
      version.href = version.href.replace(/\/\d+\/change\/$/, "/" + s.version + "/change/");
    }
    show(version, !!s);
    const when = $("snapshot-when");
    if (s) fill(when, [h("time", { datetime: s.taken_at, class: "ago", "data-ago": "" }, utc(s.taken_at))]);
    else setText(when, "none yet");
    setText($("snapshot-trigger"), s ? s.trigger + " · " + (+s.seconds).toFixed(2) + " s" : "—");
    setText($("health-reason"), (view.version && view.version.reason) || "—");
    const note = $("version-note");
    setText(note, view.version_note || "");
    show(note, !!view.version_note);
    root.dataset.state = s ? "ready" : "empty";
    root.dataset.snapshotId = s ? String(s.id) : "";
    show($("mon-body"), !!s);
    const empty = $("mon-empty");
    if (empty) show(empty, !s);
    tickStale();
  }

  function tickStale() {
    const s = state.view && state.view.snapshot;
    const node = $("snapshot-stale");
    if (!s || !node) return;
    const age = (Date.now() - new Date(s.taken_at).getTime()) / 1000;
    const interval = state.view.snapshot_interval || 60;
    const stale = age > 3 * interval;
    if (stale) {
      setText(node, "The newest snapshot is " + ago(s.taken_at).replace(" ago", "") + " old; beat takes one every " +
        Math.round(interval) + " s. Is Celery beat (or the embedded scheduler) running?");
    }
    show(node, stale);
  }

  // ---- breakdown ---------------------------------------------------------------------------------------------

  function renderBreakdown(s, formula) {
    fill($("breakdown-rows"), s.components.map(function (c) {
      return h("tr", { dataset: { component: c.name, status: c.status } },
        h("th", { scope: "row" }, h("span", { class: "component-name" }, c.name), " ",
          h("span", { class: "status status-" + c.status }, c.status), h("span", { class: "detail" }, c.detail)),
        h("td", { class: "n" }, c.weight_text), h("td", { class: "n" }, c.score_text),
        h("td", { class: "n" }, c.contribution_text));
    }));
    setText($("breakdown-total"), s.raw_total_text);
    fill($("caps"), s.caps.length ? s.caps.map(function (cap) {
      return h("li", { class: "cap" }, "Capped at ", h("b", { class: "num" }, cap.cap_text), ": " + cap.reason);
    }) : [h("li", { class: "muted" }, "No cap applied.")]);
  }

  // ---- calibration -------------------------------------------------------------------------------------------

  function renderHit(s) {
    const hit = s.hit;
    setText($("reliability-subtitle"), s.reliability.title);
    setText($("reliability-note"), s.reliability.note);
    show($("reliability-note"), !!s.reliability.note);
    setText($("hit-realised"), hit.realised_text);
    setText($("hit-realised-n"), "of " + hit.n_text + " resolved (" + hit.window + ")");
    setText($("hit-expected"), hit.expected_text);
    setText($("hit-expected-range"), "95% range " + hit.expected_range_text);
    setText($("hit-pending"), hit.pending_expected_text);
    setText($("hit-pending-n"), hit.pending_n_text + " waiting for their outcome, 95% range " + hit.pending_range_text);
  }

  function drawReliability(s) {
    const buckets = s.reliability.buckets.filter(function (b) { return b.count > 0; });
    const x = buckets.map(function (b) { return b.mean_predicted !== null ? b.mean_predicted : (b.bucket[0] + b.bucket[1]) / 2; });
    const y = buckets.map(function (b) { return b.realised_rate; });
    const maxCount = Math.max(1, ...buckets.map(function (b) { return b.count; }));
    const data = [
      { type: "scatter", mode: "lines", x: [0, 1], y: [0, 1], name: "perfect calibration", hoverinfo: "skip",
        line: { color: COLORS.muted, dash: "dash", width: 1 } },
      { type: "bar", x: x, y: buckets.map(function (b) { return b.count; }), yaxis: "y2", name: "predictions",
        marker: { color: "rgba(79, 140, 255, .18)" }, width: 0.06, hovertemplate: "%{y} predictions<extra></extra>" },
      { type: "scatter", mode: "markers", x: x, y: y, name: "realised (95% Wilson)",
        error_y: { type: "data", symmetric: false, color: COLORS.accent, thickness: 1.2, width: 3,
                   array: buckets.map(function (b) { return b.rate_high !== null ? b.rate_high - b.realised_rate : 0; }),
                   arrayminus: buckets.map(function (b) { return b.rate_low !== null ? b.realised_rate - b.rate_low : 0; }) },
        marker: { color: COLORS.accent, size: buckets.map(function (b) { return 6 + 10 * Math.sqrt(b.count / maxCount); }),
                  line: { color: COLORS.text, width: 1 } },
        customdata: buckets.map(function (b) {
          return [b.count, b.bucket[0], b.bucket[1], b.rate_low === null ? NaN : b.rate_low,
                  b.rate_high === null ? NaN : b.rate_high];
        }),
        hovertemplate: "bucket %{customdata[1]:.1f}–%{customdata[2]:.1f}<br>predicted %{x:.1%}<br>realised %{y:.1%} " +
          "(%{customdata[3]:.1%}–%{customdata[4]:.1%})<br>n = %{customdata[0]}<extra></extra>" },
    ];
    return draw($("chart-reliability"), data, layout({
      hovermode: "closest", margin: { l: 44, r: 40, t: 28, b: 36 },
      xaxis: { range: [0, 1], title: { text: "predicted probability", font: { size: 10 } }, tickformat: ".0%", dtick: 0.2,
               tickangle: 0 },
      yaxis: { range: [0, 1], title: { text: "realised rate", font: { size: 10 } }, tickformat: ".0%", dtick: 0.2 },
      yaxis2: { rangemode: "tozero", title: { text: "predictions", font: { size: 10 } }, tickfont: { size: 9 },
                tickformat: "d", nticks: 5 },
    }));
  }

  // ---- metric tables -----------------------------------------------------------------------------------------

  function renderWindows(s) {
    fill($("window-tabs"), s.windows.map(function (w) {
      return h("button", { type: "button", role: "tab", class: "tab", dataset: { window: w.key },
                           "aria-selected": String(w.key === state.window) },
        w.label + " ", h("span", { class: "muted num" }, "n=" + w.n_text));
    }));
    fill($("windows"), s.windows.map(function (w) {
      const head = h("tr", null, h("th", null, "Metric"), w.sides.map(function (side) {
        return h("th", null, side.label + " ", h("span", { class: "muted num" }, "n=" + side.n));
      }));
      const rows = w.rows.map(function (row) {
        return h("tr", { dataset: { metric: row.metric } }, h("th", { scope: "row", title: row.help }, row.label),
          w.sides.map(function (side) {
            const cell = row.cells[side.key];
            return h("td", { class: "cell", dataset: { side: side.key } },
              h("span", { class: "cell-value num" }, cell.value),
              h("span", { class: "cell-ci num muted", title: "95% interval" }, cell.ci),
              h("span", { class: "cell-expected num", title: "training's out-of-sample figure" +
                (cell.expected_range ? "; 95% range " + cell.expected_range : "") }, "exp " + cell.expected),
              h("span", { class: "verdict tone-" + cell.tone, title: cell.detail }, cell.verdict));
          }));
      });
      return h("div", { class: "window", dataset: { window: w.key, sufficient: String(w.sufficient) } },
        h("p", { class: "window-note" + (w.sufficient ? "" : " mon-warn") }, w.note || (w.n_text + " outcomes"),
          w.span ? [" · ", h("span", { class: "muted" }, w.span)] : null),
        h("div", { class: "table-scroll" }, h("table", { class: "mon-table metric-table" },
          h("thead", null, head), h("tbody", null, rows))),
        h("ul", { class: "calibration-tests muted" }, Object.entries(w.calibration).map(function ([side, text]) {
          return h("li", null, h("b", null, side), ": " + text);
        })));
    }));
    selectWindow(state.window);
  }

  function selectWindow(key) {
    state.window = key;
    document.querySelectorAll("#window-tabs .tab").forEach(function (tab) {
      tab.setAttribute("aria-selected", String(tab.dataset.window === key));
    });
    document.querySelectorAll("#windows .window").forEach(function (panel) {
      panel.hidden = panel.dataset.window !== key;
    });
  }

  $("window-tabs").addEventListener("click", function (event) {
    const tab = event.target.closest(".tab");
    if (tab) selectWindow(tab.dataset.window);
  });

  // ---- drift -------------------------------------------------------------------------------------------------

  function renderDrift(d) {
    setText($("drift-subtitle"), "PSI of " + d.live_bars_text + " live bars against the training window");
    setText($("drift-note"), d.note);
    show($("drift-note"), !!d.note);
    const row = function (f, label, extra) {
      return h("tr", Object.assign({ dataset: { feature: f.name } }, extra || {}),
        h("th", { scope: "row" }, label), h("td", { class: "n" }, f.psi_text), h("td", { class: "n" }, f.noise_text),
        h("td", { class: "n" }, f.excess_text), h("td", null, h("span", { class: "band band-" + f.band }, f.band)),
        h("td", { class: "n" }, f.n_text), h("td", { class: "n" }, f.n_effective_text));
    };
    fill($("drift-rows"), [
      ...d.probability.map(function (p) {
        return row(Object.assign({}, p, { name: "p_" + p.side }), "predicted p (" + p.side + ")", { class: "drift-probability" });
      }),
      ...d.features.map(function (f) { return row(f, f.name); }),
    ]);
  }

  function drawDrift(d) {
    const rows = [
      ...d.probability.map(function (p) { return Object.assign({}, p, { label: "predicted p (" + p.side + ")" }); }),
      ...d.features.map(function (f) { return Object.assign({}, f, { label: f.name }); }),
    ].reverse();  // Plotly draws the first category at the bottom: worst at the top
    const node = $("chart-drift");
    node.style.height = Math.max(170, 80 + 22 * rows.length) + "px";
    const labels = rows.map(function (r) { return r.label; });
    const data = [
      { type: "bar", orientation: "h", y: labels, x: rows.map(function (r) { return r.excess === null ? 0 : r.excess; }),
        name: "PSI − noise (judged)", marker: { color: rows.map(function (r) { return DRIFT_COLOR[r.band] || COLORS.muted; }) },
        customdata: rows.map(function (r) { return [r.band, r.psi_text, r.noise_text, r.n_text]; }),
        hovertemplate: "%{y}: %{customdata[0]}<br>PSI %{customdata[1]}, noise %{customdata[2]}, judged %{x:.3f}" +
          "<br>n = %{customdata[3]}<extra></extra>" },
      { type: "scatter", mode: "markers", y: labels, x: rows.map(function (r) { return r.psi; }), name: "raw PSI",
        marker: { symbol: "line-ns-open", size: 12, color: COLORS.text, line: { width: 2, color: COLORS.text } },
        hoverinfo: "skip" },
    ];
    const maxX = Math.max(0.3, ...rows.map(function (r) { return Math.max(r.psi || 0, r.excess || 0); })) * 1.08;
    return draw(node, data, layout({
      hovermode: "closest", barmode: "overlay", margin: { l: 10, r: 12, t: 28, b: 30 },
      xaxis: { range: [0, maxX], title: { text: "PSI", font: { size: 10 } } },
      yaxis: { tickfont: { size: 10, family: "ui-monospace, monospace" }, automargin: true },
      shapes: [Object.assign(vline(d.moderate, COLORS.warn, "dash"), { showlegend: true, name: d.moderate + " moderate" }),
               Object.assign(vline(d.significant, COLORS.down, "dash"), { showlegend: true, name: d.significant + " significant" })],
    }));
  }

  // ---- operations --------------------------------------------------------------------------------------------

  function renderOperations(o) {
    setText($("ops-latency"), o.latency_text.p50 + " / " + o.latency_text.p95 + " / " + o.latency_text.p99);
    setText($("ops-latency-n"), o.latency_n_text + " predictions");
    setText($("ops-rate"), o.rate_text);
    const fresh = $("ops-freshness");
    setText(fresh, o.freshness_text + " (stale after " + o.stale_after_text + "; market " + o.market_text + ")");
    fresh.className = o.fresh_ok ? "up" : "down";
    fill($("ops-workers"), o.workers === null ? [o.workers_text] : o.workers.map(function (w) {
      return h("span", { class: "worker " + (w.alive ? "up" : "down") }, w.queue + ": " + w.text);
    }));
    fill($("ops-queues"), o.queues.length ? o.queues.map(function (q) {
      return h("span", { class: "queue num" }, q.queue + " " + q.text);
    }) : [h("span", { class: "muted" }, o.queues_text)]);
  }

  // ---- series ------------------------------------------------------------------------------------------------

  function appendSeries(extra) {
    if (!state.series || !extra || !extra.t.length) return;
    const known = new Set(state.series.id);
    extra.id.forEach(function (id, i) {
      if (known.has(id)) return;
      Object.keys(state.series).forEach(function (key) { if (extra[key]) state.series[key].push(extra[key][i]); });
    });
    const start = Date.now() - (RANGE_MS[root.dataset.range] || RANGE_MS["24h"]);
    let drop = 0;
    while (drop < state.series.t.length - 1 && new Date(state.series.t[drop]).getTime() < start) drop += 1;
    if (drop) Object.keys(state.series).forEach(function (key) { state.series[key].splice(0, drop); });
  }

  function line(series, key, name, color, extra) {
    return Object.assign({
      type: "scatter", mode: series.t.length > 1 ? "lines" : "markers", name: name,
      x: series.t.map(plotTime), y: series[key], line: { color: color, width: 1.6 }, marker: { color: color, size: 5 },
      connectgaps: false,
    }, extra || {});
  }

  /** Dotted verticals where the scored version changed (a promotion or a roll-back), labelled with the new one. */
  function versionMarks(series) {
    const shapes = [], annotations = [];
    for (let i = 1; i < series.version.length; i += 1) {
      if (series.version[i] !== series.version[i - 1]) {
        const x = plotTime(series.t[i]);
        shapes.push(vline(x, COLORS.violet));
        annotations.push({ x: x, y: 1, yref: "paper", text: "v" + series.version[i], showarrow: false,
                           yanchor: "bottom", font: { size: 9, color: COLORS.violet } });
      }
    }
    return { shapes, annotations };
  }

  function drawSeries() {
    const series = state.series;
    const view = state.view;
    if (!series || !view) return Promise.resolve();
    const floors = view.floors;
    const marks = versionMarks(series);
    const zone = function (y0, y1, color) {
      return { type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y0, y1: y1, fillcolor: color,
               line: { width: 0 }, layer: "below" };
    };
    const health = draw($("chart-health"), [
      line(series, "health", "health", COLORS.text, { line: { color: COLORS.text, width: 2, shape: "hv" },
                                                      hovertemplate: "%{y:.1f}<extra>health</extra>" }),
    ], layout({
      showlegend: false, margin: { l: 36, r: 12, t: 24, b: 30 },
      yaxis: { range: [0, 100], dtick: 10 },
      shapes: [
        zone(0, floors.block, "rgba(239, 83, 80, .10)"), zone(floors.block, floors.full, "rgba(224, 165, 38, .08)"),
        zone(floors.full, 100, "rgba(38, 166, 154, .08)"),
        hline(floors.block, COLORS.down, "dash"), hline(floors.full, COLORS.up, "dash"), ...marks.shapes,
      ],
      annotations: [
        { xref: "paper", x: 0, y: floors.full, text: "full size ≥ " + floors.full_text, showarrow: false, xanchor: "left",
          yanchor: "bottom", font: { size: 9, color: COLORS.up } },
        { xref: "paper", x: 0, y: floors.block, text: "blocked ≤ " + floors.block_text, showarrow: false, xanchor: "left",
          yanchor: "top", font: { size: 9, color: COLORS.down } },
        ...marks.annotations,
      ],
    }));
    const small = function (extra) {
      return layout(Object.assign({ margin: { l: 40, r: 10, t: 44, b: 26 } }, extra));
    };
    const titled = function (text) { return { text: text, font: { size: 11 }, x: 0, xanchor: "left", y: 0.98, yanchor: "top" }; };
    const rates = draw($("chart-rates"), [
      line(series, "hit_realised", "hit rate", COLORS.accent, { hovertemplate: "%{y:.1%}" }),
      line(series, "hit_expected", "promised", COLORS.accent, { line: { color: COLORS.accent, width: 1.2, dash: "dash" }, hovertemplate: "%{y:.1%}" }),
      line(series, "accuracy", "accuracy", COLORS.cyan, { hovertemplate: "%{y:.1%}" }),
      line(series, "roc_auc", "ROC AUC", COLORS.violet, { hovertemplate: "%{y:.3f}" }),
    ], small({ title: titled("Hit rate, accuracy, AUC (chosen side, latest outcomes)"), yaxis: { tickformat: ".2f" },
               legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 9 } } }));
    const losses = draw($("chart-losses"), [
      line(series, "log_loss", "log loss", COLORS.warn, { hovertemplate: "%{y:.3f}" }),
      line(series, "brier", "Brier", COLORS.cyan, { hovertemplate: "%{y:.3f}" }),
      line(series, "ece", "ECE", COLORS.down, { hovertemplate: "%{y:.3f}" }),
    ], small({ title: titled("Log loss, Brier, ECE (lower is better)"), legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 9 } } }));
    const drift = draw($("chart-drift-series"), [
      line(series, "max_psi", "worst input", COLORS.warn, { hovertemplate: "%{y:.3f}" }),
      line(series, "probability_psi", "predicted p", COLORS.violet, { hovertemplate: "%{y:.3f}" }),
    ], small({ title: titled("Drift: largest PSI − noise"), yaxis: { rangemode: "tozero" },
               shapes: [hline(view.snapshot ? view.snapshot.drift.moderate : 0.1, COLORS.warn, "dash"),
                        hline(view.snapshot ? view.snapshot.drift.significant : 0.25, COLORS.down, "dash")],
               legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 9 } } }));
    const ops = draw($("chart-ops-series"), [
      line(series, "latency_p50", "p50", COLORS.up, { hovertemplate: "%{y:.1f} ms" }),
      line(series, "latency_p99", "p99", COLORS.down, { hovertemplate: "%{y:.1f} ms" }),
    ], small({ title: titled("Inference latency (ms)"), yaxis: { rangemode: "tozero" },
               legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 9 } } }));
    return Promise.all([health, rates, losses, drift, ops]);
  }

  // ---- alerts ------------------------------------------------------------------------------------------------

  function alertItem(a) {
    const parts = [
      h("div", { class: "alert-head" }, h("span", { class: "sev-pill sev-" + a.severity }, a.severity),
        h("span", { class: "alert-market" }, a.market), h("span", { class: "alert-rule muted" }, a.rule_name),
        h("span", { class: "alert-state tag-state tag" }, a.status)),
      h("p", { class: "alert-message" }, a.message),
      h("p", { class: "alert-meta muted" }, "opened ", h("time", { datetime: a.opened_at, "data-ago": "" }, utc(a.opened_at)),
        " · seen " + a.times_seen + "× (last ", h("time", { datetime: a.last_seen_at, "data-ago": "" }, utc(a.last_seen_at)), ")",
        a.value_text ? [" · value ", h("span", { class: "num" }, a.value_text)] : null,
        a.threshold_text ? [" against ", h("span", { class: "num" }, a.threshold_text)] : null),
    ];
    if (a.acknowledged_by) {
      parts.push(h("p", { class: "alert-ack" }, "Acknowledged by ", h("b", { class: "alert-ack-by" }, a.acknowledged_by), " ",
        h("time", { datetime: a.acknowledged_at, "data-ago": "" }, utc(a.acknowledged_at)),
        a.acknowledgement_note ? ": “" + a.acknowledgement_note + "”" : ""));
    }
    if (a.status === "resolved") {
      parts.push(h("p", { class: "alert-resolved muted" }, "Resolved ",
        h("time", { datetime: a.resolved_at, "data-ago": "" }, utc(a.resolved_at)), a.resolution ? ": " + a.resolution : ""));
    } else if (a.status === "open" && state.canAcknowledge) {
      parts.push(h("form", { method: "post", class: "ack-form",
                             action: root.dataset.acknowledgeUrl.replace("/0/", "/" + a.id + "/") },
        h("input", { type: "hidden", name: "csrfmiddlewaretoken", value: root.dataset.csrf }),
        h("input", { type: "hidden", name: "next", value: root.dataset.here + "#alerts" }),
        h("input", { type: "text", name: "note", maxlength: "2000", placeholder: "Note (optional)",
                     "aria-label": "Acknowledgement note for alert " + a.id }),
        h("button", { type: "submit", class: "btn btn-ghost ack-button" }, "Acknowledge")));
    }
    return h("li", { class: "alert-item sev-" + a.severity + " status-" + a.status, id: "alert-" + a.id,
                     dataset: { alert: String(a.id), status: a.status, severity: a.severity } }, parts);
  }

  function renderAlerts(alerts) {
    // A note being typed survives the re-render.
    const typed = {};
    document.querySelectorAll("#alert-list .ack-form input[name=note]").forEach(function (input) {
      const item = input.closest("[data-alert]");
      if (item && input.value) typed[item.dataset.alert] = { value: input.value, focused: document.activeElement === input };
    });
    fill($("alert-list"), alerts.unresolved.length ? alerts.unresolved.map(alertItem)
      : [h("li", { class: "muted alert-empty" }, "No unresolved alert.")]);
    fill($("resolved-list"), alerts.resolved.length ? alerts.resolved.map(alertItem)
      : [h("li", { class: "muted alert-empty" }, "None.")]);
    setText($("alerts-count"), alerts.unresolved.length + " unresolved");
    const summary = document.querySelector("#alerts details.resolved summary");
    setText(summary, "Recently resolved (" + alerts.resolved.length + ")");
    Object.entries(typed).forEach(function ([id, note]) {
      const input = document.querySelector('#alert-list [data-alert="' + id + '"] input[name=note]');
      if (!input) return;
      input.value = note.value;
      if (note.focused) input.focus();
    });
    tickAges($("alerts"));
  }

  // ---- refresh -----------------------------------------------------------------------------------------------

  function renderAll(view) {
    renderHead(view);
    const s = view.snapshot;
    if (!s) return Promise.resolve();
    renderBreakdown(s, view.formula);
    renderHit(s);
    renderWindows(s);
    renderDrift(s.drift);
    renderOperations(s.operations);
    tickAges(root);
    return Promise.all([drawReliability(s), drawDrift(s.drift), drawSeries()]);
  }

  let inFlight = null, again = false, soon = null;

  function refreshSoon() {
    if (soon) return;
    soon = window.setTimeout(function () { soon = null; refresh(); }, 150);  // alerts come in bursts
  }

  function refresh() {
    if (state.loginLost) return Promise.resolve();
    if (inFlight) { again = true; return inFlight; }
    const params = new URLSearchParams({ symbol: root.dataset.symbol, timeframe: root.dataset.timeframe,
                                         range: root.dataset.range });
    const newest = state.series && state.series.t.length ? state.series.t[state.series.t.length - 1] : null;
    if (newest) params.set("after", newest);
    inFlight = fetch(root.dataset.dataUrl + "?" + params, { credentials: "same-origin", cache: "no-store",
                                                            headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === root.dataset.loginUrl) {
          state.loginLost = true;
          setLive("closed", "Session expired: log in again");
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) return;
        const view = data.view;
        if (view.series_appended && state.series) appendSeries(view.series);
        else state.series = view.series;
        state.view = view;
        state.alerts = data.alerts;
        renderAlerts(data.alerts);
        return renderAll(view).then(function () {
          root.dataset.refreshed = String((+root.dataset.refreshed || 0) + 1);
        });
      })
      .catch(function (error) { if (window.console) window.console.warn("monitoring refresh failed", error); })
      .finally(function () {
        inFlight = null;
        if (again) { again = false; refresh(); }
      });
    return inFlight;
  }

  // ---- live --------------------------------------------------------------------------------------------------

  const LIVE_TEXT = { connecting: ["Connecting", "warn"], open: ["Live", "up"], reconnecting: ["Reconnecting", "warn"],
                      down: ["Down", "down"], unauthenticated: ["Log in again", "down"], gone: ["Market gone", "down"],
                      closed: ["Closed", "down"] };

  function setLive(status, text) {
    const badge = $("mon-live");
    const [label, tone] = LIVE_TEXT[status] || [status, "warn"];
    setText(badge, text || label);
    badge.className = "badge badge-" + tone;
    root.dataset.wsState = status;
  }

  // A snapshot taken or an alert changed before the socket joined (or while it was down) is not replayed: read the
  // figures once each connection is live (only newer series points come back).
  document.addEventListener("minhos:connected", function () { refresh(); });
  document.addEventListener("minhos:message", function (event) {
    const msg = event.detail || {};
    if (msg.type === "monitoring.snapshot") {
      root.dataset.lastPush = String(msg.id);
      refresh();
    } else if (typeof msg.type === "string" && msg.type.indexOf("alert.") === 0) {
      refreshSoon();
    } else if (msg.type === "retraining.decided" && msg.symbol === root.dataset.symbol &&
               msg.timeframe === root.dataset.timeframe) {
      refreshRetraining();
    }
  });

  // The retraining card is rendered by the server (decisions, figures, the approve buttons the user may press): a
  // decision re-reads the page and swaps the card in place.
  function refreshRetraining() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("card-retraining");
        const current = document.getElementById("card-retraining");
        if (fresh && current) {
          current.replaceWith(document.importNode(fresh, true));
          tickAges(document);
        }
      })
      .catch(function () { /* the next decision or a reload shows it */ });
  }

  // ---- start -------------------------------------------------------------------------------------------------

  if (state.view && state.view.snapshot) {
    const s = state.view.snapshot;
    Promise.all([drawReliability(s), drawDrift(s.drift), drawSeries()]).then(function () {
      root.dataset.chartsReady = "true";
    });
  }
  selectWindow(state.window);
  tickAges(document);
  window.setInterval(function () { tickAges(document); tickStale(); }, 5000);
  connectMarket({ symbol: root.dataset.symbol, timeframe: root.dataset.timeframe,
                  onState: function (status) { setLive(status); } });
}
