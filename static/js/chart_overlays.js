/* MinhOS chart overlays: pure builders of Plotly traces, shapes and axis breaks from the bars shown and the
   overlay data (prediction calls, fills, open brackets, equity). No DOM, no state: dashboard.js calls them on
   every render, so whatever arrives live (bars, calls, fills) is drawn the same way as the page's first data. */
(function () {
  "use strict";

  /** Plotly draws date strings as given; UTC wall-clock strings keep the axis in UTC whatever the browser's zone. */
  function plotTime(ms) { return new Date(ms).toISOString().slice(0, 19).replace("T", " "); }

  /** Index of the bar whose interval [open, open + step) holds `ms`, or -1 if none of the shown bars does. */
  function barIndexAt(bars, ms, stepMs) {
    let lo = 0, hi = bars.length;  // first index with open > ms
    while (lo < hi) { const mid = (lo + hi) >> 1; if (bars[mid].ms <= ms) lo = mid + 1; else hi = mid; }
    const i = lo - 1;
    return i >= 0 && ms < bars[i].ms + stepMs ? i : -1;
  }

  /** One break per gap between consecutive bars (weekends, the daily halt, holidays, outages): the axis runs
      from bar to bar, so closed hours take no room. Computed from the bars themselves, so DST and holidays
      need no calendar. */
  function rangebreaks(bars, stepMs) {
    const breaks = [];
    for (let i = 1; i < bars.length; i++) {
      const gapStart = bars[i - 1].ms + stepMs;
      if (bars[i].ms > gapStart) breaks.push({ bounds: [plotTime(gapStart), plotTime(bars[i].ms)] });
    }
    return breaks;
  }

  /** How many ticks to ask Plotly for over `range` (two plot-time strings): Plotly spaces them over the whole
      range, closed hours included, so a weekend in view would leave one label for hours of candles. Asking for
      more in proportion to the hidden time spaces them over the open hours instead. */
  function nticks(range, bars, stepMs, widthPx) {
    const lo = Date.parse(String(range[0]).slice(0, 19).replace(" ", "T") + "Z");
    const hi = Date.parse(String(range[1]).slice(0, 19).replace(" ", "T") + "Z");
    const wanted = Math.max(4, Math.min(9, widthPx / 80)) + 1;  // Plotly's own default for a date axis
    if (!isFinite(lo) || !isFinite(hi) || hi <= lo) return Math.round(wanted);
    let hidden = 0;
    for (let i = 1; i < bars.length; i++) {
      const from = Math.max(lo, bars[i - 1].ms + stepMs), to = Math.min(hi, bars[i].ms);
      if (to > from) hidden += to - from;
    }
    const open = Math.max(hi - lo - hidden, stepMs);
    return Math.min(500, Math.round(wanted * (hi - lo) / open));
  }

  const clamp01 = function (x) { return Math.max(0, Math.min(1, +x || 0)); };
  const pct = function (p) { return (100 * p).toFixed(1) + "%"; };

  /** 0 for a call no better than a coin (confidence 0.40 or less), 1 from 0.75 up: drives opacity and size. */
  function strength(confidence) { return clamp01((confidence - 0.4) / 0.35); }

  /** Typical candle height: how far from the candle a call's triangle sits. */
  function typicalRange(bars) {
    if (!bars.length) return 0;
    const ranges = bars.map(function (b) { return b.h - b.l; }).sort(function (a, b) { return a - b; });
    return ranges[Math.floor(ranges.length / 2)];
  }

  /** Two traces, long calls (up-triangles under the candle) and short calls (down-triangles over it). */
  function predictionTraces(bars, predictions, o) {
    const pad = Math.max(o.tick, 0.6 * typicalRange(bars));
    return ["long", "short"].map(function (side) {
      const t = { x: [], y: [], text: [], opacity: [], size: [], bar: [] };
      bars.forEach(function (b) {
        const p = predictions[b.ms];
        if (!p || p.side !== side) return;
        const s = strength(p.confidence);
        t.x.push(plotTime(b.ms));
        t.y.push(side === "long" ? b.l - pad : b.h + pad);
        t.opacity.push(+(0.3 + 0.7 * s).toFixed(3));
        t.size.push(+(8 + 6 * s).toFixed(2));
        t.bar.push(p.bar_timestamp);
        t.text.push(side.toUpperCase() + " call · " + pct(p.confidence) + " confidence<br>" +
          "P long " + pct(p.p_long) + " · P short " + pct(p.p_short) + "<br>" +
          "Model v" + p.version + " · bar " + o.fmtBarTime(b.ms));
      });
      return {
        type: "scatter", mode: "markers", name: side === "long" ? "Long calls" : "Short calls",
        meta: { overlay: "prediction", side: side, bars: t.bar },
        x: t.x, y: t.y, text: t.text, xaxis: "x", yaxis: "y", cliponaxis: false,
        hovertemplate: "%{text}<extra></extra>",
        marker: {
          symbol: side === "long" ? "triangle-up" : "triangle-down", size: t.size, opacity: t.opacity,
          color: side === "long" ? o.colors.up : o.colors.down, line: { width: 0 },
        },
      };
    });
  }

  const EXIT_STYLE = {
    take_profit: { symbol: "circle", tone: "up" },
    stop_loss: { symbol: "x", tone: "down" },
    time: { symbol: "square", tone: "muted" },
  };

  /** Entries (diamonds, coloured by side), exits (circle take-profit, x stop, square time exit, coloured by
      outcome) at their fill price on the candle they filled in, and a dotted line joining each entry to its exit. */
  function tradeTraces(bars, fills, o) {
    const entries = { x: [], y: [], text: [], color: [], order: [] };
    const exits = { x: [], y: [], text: [], color: [], symbol: [], order: [], kind: [] };
    const path = { x: [], y: [] };
    const entryAt = {};
    fills.forEach(function (f) {
      const i = barIndexAt(bars, Date.parse(f.t), o.stepMs);
      if (i < 0) return;
      const x = plotTime(bars[i].ms);
      const text = f.kind_label + " · " + f.side.toUpperCase() + " " + f.quantity + " @ " + o.fmtPrice(f.price) +
        "<br>" + o.fmtBarTime(Date.parse(f.t));
      if (f.kind === "entry") {
        entries.x.push(x); entries.y.push(f.price); entries.text.push(text); entries.order.push(f.order);
        entries.color.push(f.side === "buy" ? o.colors.up : o.colors.down);
        entryAt[f.entry] = { x: x, y: f.price };
        return;
      }
      const style = EXIT_STYLE[f.kind] || EXIT_STYLE.time;
      exits.x.push(x); exits.y.push(f.price); exits.text.push(text); exits.order.push(f.order);
      exits.kind.push(f.kind); exits.symbol.push(style.symbol); exits.color.push(o.colors[style.tone]);
      const from = entryAt[f.entry];
      if (from) path.x.push(from.x, x, null), path.y.push(from.y, f.price, null);
    });
    return [
      {
        type: "scatter", mode: "lines", name: "Trades", meta: { overlay: "trade-path" },
        x: path.x, y: path.y, xaxis: "x", yaxis: "y", hoverinfo: "skip", connectgaps: false,
        line: { color: o.colors.muted, width: 1, dash: "dot" },
      },
      {
        type: "scatter", mode: "markers", name: "Entries", meta: { overlay: "entry", orders: entries.order },
        x: entries.x, y: entries.y, text: entries.text, xaxis: "x", yaxis: "y", cliponaxis: false,
        hovertemplate: "%{text}<extra></extra>",
        marker: { symbol: "diamond", size: 11, color: entries.color, line: { color: "#ffffff", width: 1 } },
      },
      {
        type: "scatter", mode: "markers", name: "Exits",
        meta: { overlay: "exit", orders: exits.order, kinds: exits.kind },
        x: exits.x, y: exits.y, text: exits.text, xaxis: "x", yaxis: "y", cliponaxis: false,
        hovertemplate: "%{text}<extra></extra>",
        marker: { symbol: exits.symbol, size: 10, color: exits.color, line: { color: "#ffffff", width: 1 } },
      },
    ];
  }

  /** Horizontal lines across the price panel for each open trade: entry, stop and target, with their prices in
      the right margin (as the last price is). */
  function bracketShapes(brackets, o) {
    const shapes = [], annotations = [];
    brackets.forEach(function (b) {
      const qty = (b.side === "long" ? "+" : "−") + b.quantity;
      // The highest line's label goes under it: at the top of an autoranged axis it would be cut off above.
      const top = Math.max.apply(null, [b.price, b.stop_loss, b.take_profit].filter(isFinite));
      [
        { name: "position-entry", y: b.price, color: o.colors.accent, dash: "solid", label: "Entry " + qty },
        { name: "position-stop", y: b.stop_loss, color: o.colors.down, dash: "dash", label: "Stop" },
        { name: "position-target", y: b.take_profit, color: o.colors.up, dash: "dash", label: "Target" },
      ].forEach(function (line) {
        if (line.y === null || line.y === undefined || !isFinite(line.y)) return;
        shapes.push({
          type: "line", name: line.name,
          xref: "paper", x0: 0, x1: 1, yref: "y", y0: line.y, y1: line.y, layer: "above",
          line: { color: line.color, width: 1, dash: line.dash },
          label: {
            text: line.label + " " + o.fmtPrice(line.y), textposition: "start",
            yanchor: line.y === top ? "top" : "bottom",
            font: { family: o.font, size: 10, color: line.color },
          },
        });
        annotations.push({
          name: line.name, xref: "paper", x: 1, xanchor: "left", yref: "y", y: line.y, yanchor: "middle",
          text: o.fmtPrice(line.y), showarrow: false, bgcolor: line.color, borderpad: 2,
          font: { family: o.font, size: 10, color: "#ffffff" },
        });
      });
    });
    return { shapes: shapes, annotations: annotations };
  }

  /** The account's equity at each candle's close, on its own axis under the volume. */
  function equityTrace(bars, equity, o) {
    const byBar = {};
    equity.forEach(function (e) {
      // Marked at a close: the bar that ended then holds the instant just before it.
      const i = barIndexAt(bars, Date.parse(e.t) - 1, o.stepMs);
      if (i >= 0) byBar[i] = e.equity;
    });
    const x = [], y = [];
    Object.keys(byBar).map(Number).sort(function (a, b) { return a - b; }).forEach(function (i) {
      x.push(plotTime(bars[i].ms));
      y.push(byBar[i]);
    });
    return {
      type: "scatter", mode: "lines", name: "Equity", meta: { overlay: "equity" },
      x: x, y: y, xaxis: "x", yaxis: "y3", line: { color: o.colors.accent, width: 1.5, shape: "hv" },
      hovertemplate: "Equity %{y:,.2f}<extra></extra>",
    };
  }

  window.MinhOSChart = {
    plotTime: plotTime, barIndexAt: barIndexAt, rangebreaks: rangebreaks, nticks: nticks,
    predictionTraces: predictionTraces,
    tradeTraces: tradeTraces, bracketShapes: bracketShapes, equityTrace: equityTrace,
  };
})();
