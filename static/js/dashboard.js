/* MinhOS dashboard: live candlestick + volume chart (with the model's calls, the account's trades, its open
   brackets and equity drawn on it; see chart_overlays.js), the status strip, the latest ML prediction, the pending
   recommendation (Approve / Reject) and the account's P&L and positions, fed by the market websocket. */
(function () {
  "use strict";

  // The pickers navigate (?symbol=X&timeframe=Y); they work even when there is no market to show.
  const picker = document.getElementById("market-picker");
  if (picker) {
    picker.addEventListener("change", function () {
      if (picker.requestSubmit) picker.requestSubmit(); else picker.submit();
    });
  }

  const initialEl = document.getElementById("dashboard-initial");
  const chart = document.getElementById("chart");
  const strip = document.getElementById("status-strip");
  if (!initialEl || !chart || !strip || typeof window.Plotly === "undefined" || !window.MinhOSChart) return;
  const overlays = window.MinhOSChart;
  const initial = JSON.parse(initialEl.textContent);
  if (!initial || !initial.symbol || !initial.status) return;

  const COLORS = {
    up: "#26a69a", down: "#ef5350", text: "#d7dce5", muted: "#7d8799",
    grid: "#1b2130", axis: "#222938", bg: "#0b0e14", spike: "#5d6679", accent: "#4f8cff",
  };
  const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  // The server broadcasts feed status every few seconds: silence much longer than that means trouble.
  const SILENCE_MS = 15000;
  const BACKOFF_MAX_MS = 30000;
  const RIGHT_PAD_BARS = 3;  // empty room right of the last candle, as trading charts do
  const UNIT_MS = { m: 60000, h: 3600000, d: 86400000 };

  const el = function (id) { return document.getElementById(id); };
  const ui = {
    feedBadge: el("feed-badge"), feedSource: el("feed-source"), wsState: el("ws-state"),
    age: el("last-bar-age"), barTime: el("last-bar-time"), price: el("last-price"), change: el("last-change"),
    o: el("ohlc-o"), h: el("ohlc-h"), l: el("ohlc-l"), c: el("ohlc-c"), v: el("ohlc-v"),
    empty: el("chart-empty"), notice: el("strip-notice"), follow: el("chart-follow"),
  };
  const predPanel = el("prediction");
  const pui = predPanel && {
    stale: el("pred-stale"), noModel: el("pred-no-model"), waiting: el("pred-waiting"), body: el("pred-body"),
    side: el("pred-side"), confidence: el("pred-confidence"), pLong: el("pred-p-long"), pShort: el("pred-p-short"),
    meterLong: el("pred-meter-long"), meterShort: el("pred-meter-short"),
    markLong: el("pred-mark-long"), markShort: el("pred-mark-short"),
    agreement: el("pred-agreement"), barTime: el("pred-bar-time"), latency: el("pred-latency"),
    otherVersion: el("pred-other-version"), version: el("pred-version"),
    model: el("pred-model"), modelLink: el("pred-model-link"), trained: el("pred-model-trained"),
    payoff: el("pred-payoff"), breakEven: el("pred-break-even"),
    edge: el("pred-edge"), edgeTag: el("pred-edge-tag"), edgeNote: el("pred-edge-note"),
    edgeStatement: el("pred-edge-statement"),
  };

  const recPanel = el("recommendation");
  const rui = recPanel && {
    state: el("rec-state"), empty: el("rec-empty"), body: el("rec-body"),
    side: el("rec-side"), contracts: el("rec-contracts"), unit: el("rec-contracts-unit"), account: el("rec-account"),
    probability: el("rec-probability"), payoff: el("rec-payoff"), price: el("rec-price"), stop: el("rec-stop"),
    takeProfit: el("rec-take-profit"), horizon: el("rec-horizon"), barTime: el("rec-bar-time"),
    expires: el("rec-expires"), kelly: el("rec-kelly"), risk: el("rec-risk"), riskDecision: el("rec-risk-decision"),
    checks: el("rec-checks"), reasons: el("rec-reasons"),
    actions: el("rec-actions"), approve: el("approve"), reject: el("reject"), message: el("rec-message"),
  };
  const acctPanel = el("account");
  const aui = acctPanel && {
    none: el("account-none"), body: el("account-body"), name: el("account-name"), currency: el("account-currency"),
    equity: el("account-equity"), realized: el("account-realized"), unrealized: el("account-unrealized"),
    daily: el("account-daily"), drawdown: el("account-drawdown"), trades: el("account-trades"),
    autoTrading: el("account-auto-trading"), tradingState: el("account-trading-state"),
    breaker: el("account-breaker"), breakerReason: el("account-breaker-reason"), killSwitch: el("account-kill-switch"),
    settlement: el("account-settlement"), settlementFault: el("account-settlement-fault"),
    positions: el("positions"), positionRows: el("positions-rows"), positionsEmpty: el("positions-empty"),
  };

  const decimals = (function () {
    const text = String(parseFloat(chart.dataset.tickSize || "0.01"));
    return text.indexOf(".") < 0 ? 0 : text.length - text.indexOf(".") - 1;
  })();
  const priceFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  const volumeFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const fmtPrice = function (x) { return priceFormat.format(x); };

  const stepMs = (function () {
    const match = /^(\d+)([mhd])$/.exec(initial.timeframe || "");
    return match ? Number(match[1]) * UNIT_MS[match[2]] : 60000;
  })();

  const state = {
    symbol: initial.symbol,
    timeframe: initial.timeframe,
    maxBars: initial.max_bars || 300,
    bars: [],                 // {t, ms, o, h, l, c, v}, oldest first, unique by ms
    status: null,
    clockOffsetMs: 0,         // server clock minus browser clock
    lastBarReceivedMs: null,  // on the server's clock
    lastHeardMs: Date.now(),  // browser clock: last status or bar from the server
    ws: null,
    wsState: "connecting",
    attempts: 0,
    retrying: false,          // a connection failed or dropped: the next open must fill the gap
    reconnectAt: null,
    stopped: false,
    renders: 0,
    follow: true,             // the x range tracks the newest bar until the user zooms or pans
    view: 0,                  // bumped by "back to live": Plotly then drops the user's zoom
    model: initial.model || null,            // the active version's summary (edge verdict, payoff, members)
    prediction: initial.prediction || null,  // the newest prediction payload for this market
    modelAsked: {},           // version ids we re-read the page for, once each
    recommendation: initial.recommendation || null,  // pending first, else the newest of this market
    account: initial.account || null,                // the account the page shows (its figures and controls)
    positions: openPositions(initial.positions),
    deciding: false,          // an Approve / Reject request is in flight
    calls: {},                // bar open ms -> the newest prediction of that bar (chart markers)
    fills: [],                // the shown account's fills in this instrument, oldest first
    brackets: [],             // its open trades: entry, stop, target
    equity: [],               // its equity at the shown bars' closes
    overlaysAccount: null,    // the account the fills, brackets and equity are of
    overlaysFetch: null,      // "idle" | "running" | "again": one refetch at a time, the last request wins
    overlaysAsked: 0,         // reads of the overlays started (refetches and page re-reads), and the newest
    overlaysShown: 0,         // one applied: an older read that answers late must not undo a newer one
  };

  // ---- bars -------------------------------------------------------------------------------------

  function normalise(bar) {
    return { t: bar.t, ms: Date.parse(bar.t), o: +bar.o, h: +bar.h, l: +bar.l, c: +bar.c, v: +bar.v };
  }

  /** Insert or replace by time: a repeated timestamp updates that candle instead of adding one. */
  function upsertBar(raw) {
    const bar = normalise(raw);
    if (!isFinite(bar.ms)) return;
    const bars = state.bars;
    const n = bars.length;
    if (n === 0 || bar.ms > bars[n - 1].ms) {
      bars.push(bar);
    } else if (bar.ms === bars[n - 1].ms) {
      bars[n - 1] = bar;
    } else {
      let lo = 0, hi = n;  // first index with ms >= bar.ms
      while (lo < hi) { const mid = (lo + hi) >> 1; if (bars[mid].ms < bar.ms) lo = mid + 1; else hi = mid; }
      if (bars[lo].ms === bar.ms) bars[lo] = bar; else bars.splice(lo, 0, bar);
    }
    if (bars.length > state.maxBars) bars.splice(0, bars.length - state.maxBars);
  }

  // ---- chart ------------------------------------------------------------------------------------

  const plotTime = overlays.plotTime;

  function overlayOptions() {
    return {
      stepMs: stepMs, tick: parseFloat(chart.dataset.tickSize || "0.01"), colors: COLORS, font: FONT,
      fmtPrice: fmtPrice, fmtBarTime: fmtBarTime,
    };
  }

  /** The equity panel is there whenever an account is shown, marks or not, so the chart does not jump. */
  function showsEquity() { return state.overlaysAccount !== null; }

  function traces() {
    const bars = state.bars;
    const x = bars.map(function (b) { return plotTime(b.ms); });
    return [
      {
        type: "candlestick", name: state.symbol, x: x,
        open: bars.map(function (b) { return b.o; }),
        high: bars.map(function (b) { return b.h; }),
        low: bars.map(function (b) { return b.l; }),
        close: bars.map(function (b) { return b.c; }),
        xaxis: "x", yaxis: "y", whiskerwidth: 0,
        increasing: { line: { color: COLORS.up, width: 1 }, fillcolor: COLORS.up },
        decreasing: { line: { color: COLORS.down, width: 1 }, fillcolor: COLORS.down },
        hoverlabel: { bgcolor: "#161b25", bordercolor: COLORS.axis, font: { family: FONT, color: COLORS.text } },
      },
      {
        type: "bar", name: "Volume", x: x, y: bars.map(function (b) { return b.v; }),
        xaxis: "x", yaxis: "y2", opacity: 0.55,
        marker: { color: bars.map(function (b) { return b.c >= b.o ? COLORS.up : COLORS.down; }), line: { width: 0 } },
        hovertemplate: "Vol %{y:,.0f}<extra></extra>",
      },
    ].concat(
      overlays.predictionTraces(bars, state.calls, overlayOptions()),
      overlays.tradeTraces(bars, state.fills, overlayOptions()),
      showsEquity() ? [overlays.equityTrace(bars, state.equity, overlayOptions())] : []
    );
  }

  /** `equityPoints`: how many marks the equity panel draws (none: its axis has nothing to say). */
  function layout(equityPoints) {
    const first = state.bars[0];
    const last = state.bars[state.bars.length - 1];
    const prev = state.bars[state.bars.length - 2];
    const lastColor = last && prev && last.c < prev.c ? COLORS.down : COLORS.up;
    // No bars: no axes either (Plotly would invent a year 2000 range), the empty-state text says why.
    const axis = {
      visible: !!first, gridcolor: COLORS.grid, linecolor: COLORS.axis, zeroline: false, tickfont: { color: COLORS.muted },
    };
    const equity = showsEquity();
    const brackets = overlays.bracketShapes(state.brackets, overlayOptions());
    const lastShapes = last ? [{
      type: "line", name: "last-price", xref: "paper", x0: 0, x1: 1, yref: "y", y0: last.c, y1: last.c,
      line: { color: lastColor, width: 1, dash: "dot" },
    }] : [];
    const lastAnnotations = last ? [{
      name: "last-price", xref: "paper", x: 1, xanchor: "left", yref: "y", y: last.c, yanchor: "middle",
      text: fmtPrice(last.c), showarrow: false, bgcolor: lastColor, borderpad: 2,
      font: { family: FONT, size: 11, color: "#ffffff" },
    }] : [];
    const xRange = !first ? undefined : state.follow || !chart.layout
      ? [plotTime(first.ms - stepMs / 2), plotTime(last.ms + RIGHT_PAD_BARS * stepMs)]
      : chart.layout.xaxis.range.slice();
    const result = {
      paper_bgcolor: COLORS.bg, plot_bgcolor: COLORS.bg,
      font: { family: FONT, size: 11, color: COLORS.text },
      margin: { l: 10, r: 78, t: 10, b: 34 },
      showlegend: false, dragmode: "pan", hovermode: "x", bargap: 0.2,
      // Same revision, same view: zoom and pan survive live updates until "back to live".
      uirevision: state.symbol + "/" + state.timeframe + "/" + state.view,
      datarevision: state.renders,
      xaxis: Object.assign({}, axis, {
        type: "date", anchor: equity ? "y3" : "y2", rangeslider: { visible: false },
        // Closed hours (weekends, the daily halt, holidays) take no room: one break per gap between the bars.
        rangebreaks: overlays.rangebreaks(state.bars, stepMs),
        // Follows new bars until the user zooms or pans; then their view stays put (see onRelayout).
        autorange: !first,
        range: xRange,
        nticks: xRange ? overlays.nticks(xRange, state.bars, stepMs, chart.clientWidth) : undefined,
        showspikes: true, spikemode: "across", spikesnap: "cursor", spikethickness: 1,
        spikedash: "dot", spikecolor: COLORS.spike,
      }),
      yaxis: Object.assign({}, axis, {
        domain: equity ? [0.4, 1] : [0.25, 1], side: "right", tickformat: ",." + decimals + "f", fixedrange: false,
        showspikes: true, spikemode: "across", spikesnap: "cursor", spikethickness: 1,
        spikedash: "dot", spikecolor: COLORS.spike,
      }),
      yaxis2: Object.assign({}, axis, {
        domain: equity ? [0.245, 0.365] : [0, 0.2], side: "right", showgrid: false, tickformat: "~s", nticks: 3,
      }),
      shapes: lastShapes.concat(brackets.shapes),
      annotations: lastAnnotations.concat(brackets.annotations, equity && first ? [{
        name: "equity-title", xref: "paper", x: 0, xanchor: "left", yref: "y3 domain", y: 1, yanchor: "top",
        text: equityPoints ? "Equity" + (state.account ? " · " + state.account.name : "")
          : "Equity · no marks for these bars yet",
        showarrow: false, font: { family: FONT, size: 10, color: COLORS.muted },
      }] : []),
    };
    // Only when there is one: Plotly reads every "yaxisN" key, an undefined one included.
    if (equity) {
      result.yaxis3 = Object.assign({}, axis, {
        domain: [0, 0.2], side: "right", tickformat: ",.0f", nticks: 3, showticklabels: !!equityPoints,
        showgrid: !!equityPoints,
      });
    }
    return result;
  }

  const plotConfig = {
    responsive: true, displaylogo: false, scrollZoom: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "toggleSpikelines", "hoverClosestCartesian", "hoverCompareCartesian"],
  };

  function onRelayout(change) {
    if (change["xaxis.autorange"] === true || change["xaxis.autorange"] === "true") {
      backToLive();  // double-click
    } else if ("xaxis.range[0]" in change || "xaxis.range" in change) {
      setFollow(false);
      // Zoomed or panned: as many time labels for the hours now in view (closed ones do not count).
      const range = chart.layout.xaxis.range;
      const n = overlays.nticks(range, state.bars, stepMs, chart.clientWidth);
      if (n !== chart.layout.xaxis.nticks) window.Plotly.relayout(chart, { "xaxis.nticks": n });
    }
  }

  function backToLive() {
    setFollow(true);
    state.view += 1;
    render();
  }

  function setFollow(follow) {
    state.follow = follow;
    ui.follow.hidden = follow;
    chart.dataset.follow = String(follow);
  }

  function render() {
    state.renders += 1;
    pruneCalls();
    const data = traces();
    const equityTrace = data.find(function (t) { return t.meta && t.meta.overlay === "equity"; });
    const done = window.Plotly.react(chart, data, layout(equityTrace ? equityTrace.x.length : 0), plotConfig);
    const last = state.bars[state.bars.length - 1];
    // Stable hooks for tests and tooling, set after Plotly holds the same data.
    chart.dataset.barCount = String(state.bars.length);
    chart.dataset.lastBarTime = last ? last.t : "";
    chart.dataset.lastClose = last ? String(last.c) : "";
    chart.dataset.renders = String(state.renders);
    chart.dataset.calls = String(Object.keys(state.calls).length);
    ui.empty.hidden = state.bars.length > 0;
    renderBarFacts();
    renderPredictionAge();
    return done;
  }

  // ---- chart overlays: calls, fills, open brackets, equity ----------------------------------------

  /** A call for a bar: the newest one heard of replaces an earlier one of the same bar (a newer version's). */
  function addCall(p) {
    const ms = p ? Date.parse(p.bar_timestamp) : NaN;
    if (!isFinite(ms) || (p.side !== "long" && p.side !== "short")) return false;
    state.calls[ms] = {
      bar_timestamp: p.bar_timestamp, side: p.side, confidence: +p.confidence, p_long: +p.p_long,
      p_short: +p.p_short, version: p.version,
    };
    return true;
  }

  /** Calls of bars that scrolled out of the window are dropped: the map stays as small as the chart. */
  function pruneCalls() {
    const first = state.bars[0];
    if (!first) return;
    Object.keys(state.calls).forEach(function (ms) { if (Number(ms) < first.ms) delete state.calls[ms]; });
  }

  /** The server's overlay read (the page's initial data, a refetch, or a resync): replaces what was shown,
      unless a read started later has already been applied. */
  function applyOverlays(data, asked) {
    if (!data || (asked || 0) < state.overlaysShown) return false;
    state.overlaysShown = asked || 0;
    (data.predictions || []).forEach(addCall);
    state.overlaysAccount = data.account === undefined ? null : data.account;
    state.fills = data.fills || [];
    state.brackets = data.brackets || [];
    state.equity = data.equity || [];
    chart.dataset.overlaysAccount = state.overlaysAccount === null ? "" : String(state.overlaysAccount);
    chart.dataset.fills = String(state.fills.length);
    chart.dataset.brackets = String(state.brackets.length);
    chart.dataset.equityPoints = String(state.equity.length);
    return true;
  }

  /** Fills, brackets and equity changed (an account.updated push): read them again, one request at a time; a
      push that arrives meanwhile asks for one more read once this one is done, so the last state always shows. */
  function refetchOverlays() {
    if (state.overlaysFetch === "running" || state.overlaysFetch === "again") {
      state.overlaysFetch = "again";
      return;
    }
    state.overlaysFetch = "running";
    const asked = ++state.overlaysAsked;
    const account = state.account ? state.account.id : state.overlaysAccount;
    const url = (chart.dataset.overlaysUrl || "/chart/overlays/") + "?" + new URLSearchParams({
      symbol: state.symbol, timeframe: state.timeframe, account: account === null ? "" : String(account),
    }).toString();
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok || response.redirected) return null;
        return response.json();
      })
      .then(function (data) {
        if (data && (state.account ? state.account.id : state.overlaysAccount) === data.account &&
            applyOverlays(data, asked)) {
          chart.dataset.overlaysFetched = String(Number(chart.dataset.overlaysFetched || "0") + 1);
          render();
        }
      })
      .catch(function () { /* the next push or the reconnect's resync reads them again */ })
      .then(function () {
        const again = state.overlaysFetch === "again";
        state.overlaysFetch = "idle";
        if (again) refetchOverlays();
      });
  }

  // ---- status strip -----------------------------------------------------------------------------

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function fmtAge(seconds) {
    if (seconds < 1) return "just now";
    const s = Math.floor(seconds);
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " m " + pad(s % 60) + " s ago";
    if (s < 86400) return Math.floor(s / 3600) + " h " + pad(Math.floor(s / 60) % 60) + " m ago";
    return Math.floor(s / 86400) + " d ago";
  }

  /** "14:31 UTC" for today's bars (UTC), with the date in front otherwise. */
  function fmtBarTime(ms) {
    const iso = new Date(ms).toISOString();
    const clock = iso.slice(11, iso.slice(17, 19) === "00" ? 16 : 19) + " UTC";
    const today = new Date(Date.now() + state.clockOffsetMs).toISOString().slice(0, 10);
    return (iso.slice(0, 10) === today ? "" : iso.slice(0, 10) + " ") + clock;
  }

  function renderBarFacts() {
    const bars = state.bars;
    const last = bars[bars.length - 1];
    const prev = bars[bars.length - 2];
    if (!last) {
      ui.barTime.textContent = "none yet";
      return;
    }
    ui.barTime.textContent = fmtBarTime(last.ms);
    ui.price.textContent = fmtPrice(last.c);
    ui.o.textContent = fmtPrice(last.o);
    ui.h.textContent = fmtPrice(last.h);
    ui.l.textContent = fmtPrice(last.l);
    ui.c.textContent = fmtPrice(last.c);
    ui.v.textContent = volumeFormat.format(last.v);
    ui.change.classList.remove("up", "down");
    ui.price.classList.remove("up", "down");
    if (prev) {
      const diff = last.c - prev.c;
      const pct = prev.c ? (diff / prev.c) * 100 : 0;
      const sign = diff > 0 ? "+" : diff < 0 ? "−" : "±";
      ui.change.textContent = sign + fmtPrice(Math.abs(diff)) + " (" + sign + Math.abs(pct).toFixed(2) + "%)";
      if (diff !== 0) {
        ui.change.classList.add(diff > 0 ? "up" : "down");
        ui.price.classList.add(diff > 0 ? "up" : "down");
      }
    } else {
      ui.change.textContent = "—";
    }
  }

  function setBadge(node, text, tone) {
    node.textContent = text;
    node.classList.remove("badge-up", "badge-down", "badge-warn");
    node.classList.add("badge-" + tone);
  }

  function applyStatus(status) {
    state.status = status;
    const serverNow = Date.parse(status.server_time);
    if (isFinite(serverNow)) state.clockOffsetMs = serverNow - Date.now();
    const received = status.last_bar_received_at ? Date.parse(status.last_bar_received_at) : NaN;
    if (isFinite(received)) state.lastBarReceivedMs = received;
    ui.feedSource.textContent = status.source || "";
    ui.feedBadge.title = "Feed source: " + (status.source || "none");
    applyWorkers(status.workers);
  }

  /** Deployment only (embedded mode has no workers): whether every queue has a worker taking its tasks. */
  function applyWorkers(workers) {
    const item = el("workers-item"), badge = el("workers-badge");
    if (!item || !badge) return;
    item.hidden = !workers;
    if (!workers) return;
    if (workers.status === "ok") setBadge(badge, "Up", "up");
    else if (workers.status === "down") setBadge(badge, "Down: " + workers.down.join(", "), "down");
    else setBadge(badge, "Unknown", "warn");
    item.dataset.workers = workers.status;
  }

  /** Runs every second: ages tick on the browser clock, corrected by the server's offset. */
  function tick() {
    const now = Date.now();
    const silentMs = now - state.lastHeardMs;
    let feed;
    if (!state.status || !state.status.running) feed = "stopped";
    else if (silentMs > Math.max(SILENCE_MS, 3000 * (state.status.pace_seconds || 0))) feed = "stale";
    else feed = "running";
    strip.dataset.feedState = feed;
    if (feed === "running") setBadge(ui.feedBadge, "Running", "up");
    else if (feed === "stale") setBadge(ui.feedBadge, "No data " + Math.floor(silentMs / 1000) + " s", "warn");
    else setBadge(ui.feedBadge, "Stopped", "down");

    if (state.lastBarReceivedMs !== null) {
      const age = Math.max(0, (now + state.clockOffsetMs - state.lastBarReceivedMs) / 1000);
      ui.age.textContent = fmtAge(age);
      strip.dataset.lastBarAge = String(Math.floor(age));
    } else {
      ui.age.textContent = "";
    }
    renderWsState();
  }

  function renderWsState() {
    const s = state.wsState;
    strip.dataset.wsState = s;
    ui.wsState.title = "";
    if (s === "open") setBadge(ui.wsState, "Live", "up");
    else if (s === "connecting") setBadge(ui.wsState, "Connecting", "warn");
    else if (s === "reconnecting") {
      const wait = state.reconnectAt ? Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000)) : 0;
      setBadge(ui.wsState, "Reconnecting", "warn");
      ui.wsState.title = wait > 0 ? "Next attempt in " + wait + " s" : "Connecting…";
    } else if (s === "down") {
      const wait = state.reconnectAt ? Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000)) : 0;
      setBadge(ui.wsState, "Stream: down", "down");
      ui.wsState.title = (state.streamDownReason || "") + (wait > 0 ? " Next attempt in " + wait + " s." : " Connecting…");
    } else setBadge(ui.wsState, "Offline", "down");
  }

  function notice(html) {
    ui.notice.innerHTML = html;
    ui.notice.hidden = !html;
  }

  // ---- prediction panel ---------------------------------------------------------------------------

  const pct = function (p) { return (100 * p).toFixed(1) + "%"; };
  const clamp01 = function (p) { return Math.max(0, Math.min(1, +p || 0)); };

  function adminUrl(id) {
    return (predPanel.dataset.adminUrl || "/admin/mlcore/modelversion/0/change/").replace("/0/", "/" + id + "/");
  }

  /** A newer (or same-bar, later) prediction replaces the shown one; an older one arriving late is ignored. */
  function applyPrediction(p) {
    if (!pui || !p || !isFinite(Date.parse(p.bar_timestamp))) return;
    const shown = state.prediction;
    if (shown && Date.parse(shown.bar_timestamp) > Date.parse(p.bar_timestamp)) return;
    state.prediction = p;
    // A version we know nothing about (just promoted, say): its edge verdict is on the page, read it once.
    if ((!state.model || state.model.id !== p.version) && !state.modelAsked[p.version]) {
      state.modelAsked[p.version] = true;
      resync();
    }
    renderPrediction();
  }

  function renderPrediction() {
    if (!pui) return;
    const m = state.model, p = state.prediction;
    // Without an active model a stored call is a retired version's: not shown (the panel says how to train one).
    const mode = !m ? "no-model" : p ? "ready" : "waiting";
    const d = predPanel.dataset;
    d.state = mode;
    d.model = m ? String(m.id) : "";
    pui.noModel.hidden = mode !== "no-model";
    pui.waiting.hidden = mode !== "waiting";
    pui.body.hidden = mode !== "ready";
    pui.model.hidden = !m;
    if (mode === "ready") {
      const breakEven = breakEvenOf(m);
      pui.side.textContent = p.side.toUpperCase();
      pui.side.className = "side-badge side-" + p.side;
      pui.confidence.textContent = pct(p.confidence);
      pui.confidence.title = "Calibrated probability that the " + p.side + " take-profit comes before its stop" +
        (breakEven === null ? "" : "; break-even at this payoff: " + pct(breakEven));
      [
        { side: "long", value: pui.pLong, meter: pui.meterLong, mark: pui.markLong, p: p.p_long },
        { side: "short", value: pui.pShort, meter: pui.meterShort, mark: pui.markShort, p: p.p_short },
      ].forEach(function (row) {
        row.value.textContent = pct(row.p);
        row.value.classList.toggle("chosen", row.side === p.side);
        row.meter.style.width = (100 * clamp01(row.p)).toFixed(1) + "%";
        row.mark.hidden = breakEven === null;
        if (breakEven !== null) {
          row.mark.style.left = (100 * breakEven).toFixed(1) + "%";
          row.mark.title = "Break-even " + pct(breakEven) + " at " + m.payoff_ratio.toFixed(2) + " : 1";
        }
      });
      pui.agreement.textContent = agreementText(p, m);
      pui.barTime.textContent = fmtBarTime(Date.parse(p.bar_timestamp));
      pui.barTime.title = "Predicted at the close of the bar that opened at " + p.bar_timestamp;
      pui.latency.textContent = (+p.latency_ms).toFixed(1) + " ms";
      pui.otherVersion.hidden = p.version === m.id;
      pui.version.textContent = "v" + p.version;
      pui.version.href = adminUrl(p.version);
      d.side = p.side;
      d.confidence = String(p.confidence);
      d.version = String(p.version);
      d.barTime = p.bar_timestamp;
    } else {
      d.side = d.confidence = d.version = d.barTime = "";
    }
    if (m) renderModel(m, mode === "ready" ? p : null);
    renderPredictionAge();
  }

  /** "4/5 members agree" when the member count is known and the share is a whole number of them, else a share. */
  function agreementText(p, m) {
    const n = p.members || (m && p.version === m.id ? m.members : 0);
    const k = n * p.agreement;
    if (n > 0 && Math.abs(k - Math.round(k)) < 0.01) return Math.round(k) + "/" + n + " members agree";
    return Math.round(100 * p.agreement) + "% of members agree";
  }

  /** Kelly's f* = p − (1 − p) / b is positive above p = 1 / (1 + b). */
  function breakEvenOf(m) { return m && m.payoff_ratio > 0 ? 1 / (1 + m.payoff_ratio) : null; }

  function renderModel(m, p) {
    pui.modelLink.textContent = "v" + m.id;
    pui.modelLink.href = adminUrl(m.id);
    pui.trained.textContent = m.created_at ? "trained " + m.created_at.slice(0, 10) : "";
    pui.payoff.textContent = (+m.payoff_ratio).toFixed(2) + " : 1";
    const breakEven = breakEvenOf(m);
    pui.breakEven.textContent = breakEven === null ? "—" : pct(breakEven);
    const sideEdge = p && m.edge_by_side ? m.edge_by_side[p.side] : null;
    let edge, tag, note;
    if (!m.has_edge) {
      edge = "none"; tag = "No edge over baselines";
      note = "Out of sample this model did not beat simple baselines: treat its calls as unproven.";
    } else if (sideEdge === false) {
      edge = "other-side"; tag = "No edge on the " + p.side + " side";
      note = "Its edge over the baselines is on the other side only: treat this call as unproven.";
    } else {
      edge = "edge"; tag = "Edge over baselines"; note = "";
    }
    pui.edge.dataset.edge = edge;
    pui.edgeTag.textContent = tag;
    pui.edgeTag.className = "tag " + (edge === "edge" ? "tag-up" : "tag-warn");
    pui.edgeNote.textContent = note;
    pui.edgeNote.hidden = !note;
    pui.edgeStatement.textContent = m.edge_statement || "No verdict recorded.";
  }

  /** Bars closed since the shown prediction's bar: two or more means predictions stopped coming. */
  function renderPredictionAge() {
    if (!pui) return;
    const p = state.prediction;
    const last = state.bars[state.bars.length - 1];
    let behind = 0;
    if (predPanel.dataset.state === "ready" && p && last) {
      behind = Math.max(0, Math.round((last.ms - Date.parse(p.bar_timestamp)) / stepMs));
    }
    const stale = behind >= 2;
    predPanel.dataset.stale = String(stale);
    pui.stale.hidden = !stale;
    pui.stale.textContent = stale ? behind + " bars old" : "";
    pui.stale.title = stale ? "No prediction for the last " + behind + " closed bars" : "";
  }

  // ---- recommendation: size, Kelly factors, risk checks, Approve / Reject -------------------------

  const STATE_LABELS = {
    proposed: "Proposed", pending: "Pending approval", approved: "Approved", executed: "Executed",
    rejected: "Rejected", expired: "Expired", blocked: "Blocked by risk",
  };
  const moneyFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const fmtMoney = function (x) { return moneyFormat.format(+x); };
  const f4 = function (x) { return (+x).toFixed(4); };

  function openPositions(positions) {
    return (positions || []).filter(function (p) { return p && Number(p.quantity) !== 0; });
  }

  function newerThan(a, b) {
    const ta = Date.parse(a.bar_timestamp), tb = Date.parse(b.bar_timestamp);
    return ta !== tb ? ta > tb : a.id > b.id;
  }

  /** A pushed recommendation: the shown one updated, or one that should take its place (pending ones first). */
  function applyRecommendation(r) {
    if (!recPanel || !r || r.id === undefined || r.id === null) return;
    const shown = state.recommendation;
    if (shown && shown.id === r.id) {
      if (r.state === "pending" && shown.state !== "pending") return;  // a late echo: a decision is never undone
    } else if (shown) {
      // An approved one stays in view until it is executed (the person who approved it is watching for the
      // fill); only a new pending recommendation, which needs a decision, takes its place sooner.
      const replace = r.state === "pending"
        ? shown.state !== "pending" || newerThan(r, shown)
        : shown.state !== "pending" && shown.state !== "approved" && newerThan(r, shown);
      if (!replace) return;
      showDecisionMessage("");
    }
    state.recommendation = r;
    renderRecommendation();
  }

  /** What the approve / reject endpoint answered: moves the shown one on from pending (a push may be faster). */
  function applyDecisionResult(id, body) {
    const shown = state.recommendation;
    if (!shown || shown.id !== id || shown.state !== "pending" || !body || !(body.state in STATE_LABELS)) return;
    const next = Object.assign({}, shown, { state: body.state, state_label: STATE_LABELS[body.state] });
    if (typeof body.state_label === "string") next.state_label = body.state_label;
    if (typeof body.contracts === "number") next.contracts = body.contracts;
    state.recommendation = next;
    renderRecommendation();
  }

  function renderRecommendation() {
    if (!recPanel) return;
    const r = state.recommendation;
    const d = recPanel.dataset;
    d.id = r ? String(r.id) : "";
    d.state = r ? r.state : "none";
    d.side = r ? r.side : "";
    d.contracts = r ? String(r.contracts) : "";
    d.riskDecision = r ? r.risk_decision : "";
    rui.empty.hidden = !!r;
    rui.body.hidden = !r;
    rui.state.hidden = !r;
    if (rui.actions) rui.actions.hidden = !(r && r.state === "pending");
    setDecisionButtons();
    if (!r) return;
    rui.state.textContent = r.state_label || STATE_LABELS[r.state] || r.state;
    rui.state.className = "tag tag-state tag-" + r.state;
    rui.side.textContent = String(r.side).toUpperCase();
    rui.side.className = "side-badge side-" + r.side;
    rui.contracts.textContent = String(r.contracts);
    rui.unit.textContent = r.contracts === 1 ? "contract" : "contracts";
    rui.account.textContent = r.account;
    rui.probability.textContent = pct(r.probability);
    rui.payoff.textContent = (+r.payoff_ratio).toFixed(2) + " : 1";
    rui.price.textContent = fmtPrice(+r.reference_price);
    rui.stop.textContent = (+r.stop_distance).toFixed(2);
    rui.takeProfit.textContent = (+r.take_profit_distance).toFixed(2);
    rui.horizon.textContent = r.horizon_bars + " bars";
    rui.barTime.textContent = fmtBarTime(Date.parse(r.bar_timestamp));
    rui.barTime.title = "Made at the close of the bar that opened at " + r.bar_timestamp;
    rui.expires.textContent = fmtBarTime(Date.parse(r.expires_after));
    renderKelly(r.kelly || {});
    renderRisk(r);
  }

  function renderKelly(k) {
    const text = {
      full_kelly: f4(k.full_kelly), kelly_fraction: f4(k.kelly_fraction), confidence_factor: f4(k.confidence_factor),
      drawdown_factor: f4(k.drawdown_factor), health_factor: f4(k.health_factor),
      volatility_factor: f4(k.volatility_factor), adjusted_fraction: f4(k.adjusted_fraction),
      risk_per_contract: fmtMoney(k.risk_per_contract), raw_contracts: f4(k.raw_contracts),
      contracts: String(k.contracts), capped: k.capped ? "reached (" + k.contracts + " max)" : "not reached",
      reason: k.reason || "",
    };
    rui.kelly.querySelectorAll("tr[data-factor]").forEach(function (row) {
      const factor = row.dataset.factor;
      row.querySelector("td").textContent = text[factor] === undefined ? "—" : text[factor];
      if (factor === "reason") row.hidden = !k.reason;
    });
  }

  function renderRisk(r) {
    const decision = r.risk_decision || "";
    rui.risk.dataset.decision = decision;
    rui.riskDecision.textContent = decision.toUpperCase();
    rui.riskDecision.className = "tag tag-risk tag-risk-" + decision;
    const checks = (r.risk && r.risk.checks) || [];
    rui.checks.replaceChildren.apply(rui.checks, checks.map(function (check) {
      const item = document.createElement("li");
      item.className = "check " + (check.passed ? "check-pass" : "check-fail");
      item.dataset.check = check.name;
      item.dataset.passed = String(!!check.passed);
      [["check-verdict", check.passed ? "Pass" : "Fail"], ["check-name", check.name],
        ["check-message", check.message]].forEach(function (part) {
        const span = document.createElement("span");
        span.className = part[0];
        span.textContent = part[1];
        item.appendChild(span);
      });
      return item;
    }));
    const reasons = r.reasons || [];
    rui.reasons.replaceChildren.apply(rui.reasons, reasons.map(function (reason) {
      const item = document.createElement("li");
      item.textContent = reason;
      return item;
    }));
    rui.reasons.hidden = reasons.length === 0;
  }

  function setDecisionButtons() {
    if (!rui || !rui.approve) return;
    const r = state.recommendation;
    const disabled = state.deciding || !r || r.state !== "pending";
    rui.approve.disabled = disabled;
    rui.reject.disabled = disabled;
    recPanel.dataset.busy = String(state.deciding);
    recPanel.setAttribute("aria-busy", String(state.deciding));
  }

  function showDecisionMessage(text) {
    if (!rui || !rui.message) return;
    rui.message.textContent = text;
    rui.message.hidden = !text;
  }

  function csrfToken() {
    const input = recPanel.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /** POST approve or reject once: both buttons stay disabled until the server has answered. */
  function decide(action) {
    const r = state.recommendation;
    if (!r || r.state !== "pending" || state.deciding) return;
    const id = r.id;
    state.deciding = true;
    setDecisionButtons();
    showDecisionMessage("");
    const url = recPanel.dataset[action + "Url"].replace("{id}", encodeURIComponent(id));
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/json", Accept: "application/json" },
      body: "{}",
    })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (response.ok) {
            applyDecisionResult(id, body);
            return;
          }
          if (response.status === 409 && body) applyDecisionResult(id, { state: body.state });
          const detail = body && typeof body.detail === "string" && body.detail
            ? body.detail : "The server refused to " + action + " it (HTTP " + response.status + ").";
          showDecisionMessage(detail);
        });
      })
      .catch(function () {
        showDecisionMessage("No answer from the server. The panel shows the decision as soon as it is recorded; " +
          "if it stays pending, try again.");
      })
      .then(function () {
        state.deciding = false;
        setDecisionButtons();
      });
  }

  // ---- account: equity, P&L, controls, open positions ---------------------------------------------

  function applyAccount(msg) {
    if (!acctPanel || !msg || !msg.account) return;
    if (state.account && state.account.id !== msg.account.id) return;  // another account's news
    state.account = msg.account;
    state.positions = openPositions(msg.positions);
    renderAccount();
  }

  function setPnl(node, value) {
    const x = +value;
    node.textContent = fmtMoney(x);
    node.classList.toggle("up", x > 0);
    node.classList.toggle("down", x < 0);
  }

  function renderAccount() {
    if (!acctPanel) return;
    const a = state.account;
    const d = acctPanel.dataset;
    d.state = a ? "ready" : "none";
    d.accountId = a ? String(a.id) : "";
    aui.none.hidden = !!a;
    aui.body.hidden = !a;
    if (!a) return;
    d.autoTrading = String(!!a.auto_trading);
    d.tradingState = a.trading_state;
    d.breaker = a.circuit_breaker_tripped ? "tripped" : "ok";
    d.killSwitch = a.kill_switch ? "engaged" : "released";
    d.settlement = a.settlement_fault ? "failed" : "ok";
    aui.name.textContent = a.name;
    aui.currency.textContent = a.currency;
    aui.equity.textContent = fmtMoney(a.equity);
    setPnl(aui.realized, a.realized_pnl);
    setPnl(aui.unrealized, a.unrealized_pnl);
    setPnl(aui.daily, a.daily_pnl);
    aui.drawdown.textContent = (100 * (+a.drawdown || 0)).toFixed(2) + "%";
    aui.trades.textContent = String(a.trades_today);
    setBadge(aui.autoTrading, a.auto_trading ? "On" : "Off", a.auto_trading ? "warn" : "up");
    setBadge(aui.tradingState, a.trading_state,
      a.trading_state === "ACTIVE" ? "up" : a.trading_state === "REDUCING" ? "warn" : "down");
    setBadge(aui.breaker, a.circuit_breaker_tripped ? "Tripped" : "OK", a.circuit_breaker_tripped ? "down" : "up");
    aui.breaker.title = a.circuit_breaker_reason || "Trips when the day’s loss reaches the limit";
    aui.breakerReason.textContent = a.circuit_breaker_reason || "";
    aui.breakerReason.hidden = !a.circuit_breaker_tripped;
    setBadge(aui.killSwitch, a.kill_switch ? "Engaged" : "Off", a.kill_switch ? "down" : "up");
    setBadge(aui.settlement, a.settlement_fault ? "Failed" : "OK", a.settlement_fault ? "down" : "up");
    aui.settlementFault.textContent = a.settlement_fault
      ? "Settling the last bar failed, so no new entries are taken until a bar settles: " + a.settlement_fault : "";
    aui.settlementFault.hidden = !a.settlement_fault;
    renderPositions();
  }

  function renderPositions() {
    const rows = state.positions.map(function (p) {
      const row = document.createElement("tr");
      row.dataset.symbol = p.symbol;
      row.dataset.quantity = String(p.quantity);
      const symbol = document.createElement("th");
      symbol.scope = "row";
      symbol.textContent = p.symbol;
      row.appendChild(symbol);
      const cell = function (text, tone) {
        const td = document.createElement("td");
        td.className = "num" + (tone ? " " + tone : "");
        td.textContent = text;
        row.appendChild(td);
        return td;
      };
      const q = Number(p.quantity);
      cell((q > 0 ? "+" : "") + q, q > 0 ? "up" : "down");
      cell(fmtMoney(p.average_price));
      cell(p.mark_price === null || p.mark_price === undefined ? "—" : fmtMoney(p.mark_price));
      setPnl(cell(""), p.unrealized_pnl);
      setPnl(cell(""), p.realized_pnl);
      return row;
    });
    aui.positionRows.replaceChildren.apply(aui.positionRows, rows);
    aui.positions.dataset.count = String(rows.length);
    aui.positionsEmpty.hidden = rows.length > 0;
  }

  // ---- websocket ----------------------------------------------------------------------------------

  function socketUrl() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    return scheme + "://" + window.location.host + "/ws/market/" +
      encodeURIComponent(state.symbol) + "/" + encodeURIComponent(state.timeframe) + "/";
  }

  function setWsState(s) { state.wsState = s; renderWsState(); }

  const CLOSE_STREAM_UNAVAILABLE = 4503;  // trading/consumers.py
  const HEALTH_POLL_MS = 5000;
  const streamDetail = el("stream-detail");

  function handleMessage(msg) {
    state.lastHeardMs = Date.now();
    if (msg.type === "bar.closed" && msg.bar) {
      upsertBar(msg.bar);
      // A catch-up bar is drawn with the others at resume.done; it was not received now.
      if (!state.resuming) {
        state.lastBarReceivedMs = Date.now() + state.clockOffsetMs;
        render();
      }
    } else if (msg.type === "resume.done") {
      state.resuming = false;
      strip.dataset.resumedBars = String(msg.bars);
      render();
      if (msg.more) sendResume(state.ws);  // more than one page missed: ask from the newest bar we have now
    } else if (msg.type === "error") {
      state.resuming = false;
      if (window.console) window.console.warn("stream refused a message:", msg.field, msg.message);
    } else if (msg.type === "feed.status") {
      applyStatus(msg);
    } else if (msg.type === "prediction.created") {
      if (addCall(msg) && !state.resuming) render();
      applyPrediction(msg);
    } else if (msg.type === "recommendation.updated") {
      // The last recommendation heard of, shown or not (a hook for tests and for reading the page's state).
      if (recPanel && msg.id !== undefined) recPanel.dataset.lastPushId = String(msg.id);
      applyRecommendation(withoutType(msg));
    } else if (msg.type === "account.updated") {
      applyAccount(msg);
      // Its fills, brackets and equity are not in the push: read them for the shown account.
      if (msg.account && state.account && msg.account.id === state.account.id) refetchOverlays();
    }
    tick();
  }

  function withoutType(msg) {
    const payload = Object.assign({}, msg);
    delete payload.type;
    return payload;
  }

  function stopForGood(wsState, html) {
    state.stopped = true;
    setWsState(wsState);
    notice(html);
  }

  function loginUrl() {
    return (chart.dataset.loginUrl || "/accounts/login/") + "?next=" +
      encodeURIComponent(window.location.pathname + window.location.search);
  }

  function connect() {
    if (state.stopped) return;
    state.reconnectAt = null;
    state.reconnectTimer = null;
    if (!state.streamDownReason) setWsState(state.retrying ? "reconnecting" : "connecting");
    else renderWsState();
    let opened = false, live = false;
    const ws = new WebSocket(socketUrl());
    state.ws = ws;
    ws.onopen = function () { opened = true; };
    ws.onmessage = function (event) {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      // Live from the server's first message (its feed status): a socket accepted only to be closed with 4503
      // sends none, and must neither show "Live" nor reset the backoff.
      if (!live) {
        live = true;
        state.attempts = 0;
        notice("");
        streamUp();
        setWsState("open");
        // Bars may have closed since the page was made or while we were away: the stream sends what we missed.
        sendResume(ws);
        // The account and the model are not in the stream: read them from the page itself.
        if (state.retrying) resync();
        state.retrying = false;
        document.dispatchEvent(new CustomEvent("minhos:connected"));
      }
      handleMessage(msg);
      // The page's other modules (the alerts strip) listen to the same socket.
      document.dispatchEvent(new CustomEvent("minhos:message", { detail: msg }));
    };
    ws.onclose = function (event) {
      if (state.ws === ws) state.ws = null;
      if (event.code === 4401) return stopForGood("closed", 'Session expired. <a href="' + loginUrl() + '">Log in again</a>.');
      if (event.code === 4404) return stopForGood("closed", "This market is not available any more.");
      state.resuming = false;
      if (event.code === CLOSE_STREAM_UNAVAILABLE) {
        streamDown("The server has no live stream for now (" + (event.reason || "stream unavailable") + ").");
        return scheduleReconnect();
      }
      if (!opened) streamDown("Cannot connect to the live stream.");
      // Browsers hide the close code of a refused handshake: ask the page itself why before retrying.
      if (!opened) {
        resync().then(function (outcome) { if (outcome === "ok" || outcome === "error") scheduleReconnect(); });
      } else {
        scheduleReconnect();
      }
    };
  }

  function scheduleReconnect() {
    if (state.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, 1000 * Math.pow(2, state.attempts));
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    state.attempts += 1;
    state.reconnectAt = Date.now() + delay;
    state.retrying = true;
    setWsState(state.streamDownReason ? "down" : "reconnecting");
    state.reconnectTimer = window.setTimeout(connect, delay);
  }

  /** Ask for what we missed since our newest bar; the answer comes as live messages, then resume.done. */
  function sendResume(ws) {
    const newest = state.bars[state.bars.length - 1];
    if (!newest || !ws || ws.readyState !== WebSocket.OPEN) return;
    state.resuming = true;
    ws.send(JSON.stringify({ type: "resume", since: newest.t }));
  }

  // While the stream is down (closed with 4503, or no connection at all) /healthz says which part of the server is.
  function streamDown(reason) {
    state.streamDownReason = reason;
    if (!state.healthTimer) {
      pollHealth();
      state.healthTimer = window.setInterval(pollHealth, HEALTH_POLL_MS);
    }
  }

  function streamUp() {
    state.streamDownReason = "";
    if (state.healthTimer) window.clearInterval(state.healthTimer);
    state.healthTimer = null;
    showStreamDetail("");
    delete strip.dataset.healthDown;
  }

  function showStreamDetail(text) {
    if (!streamDetail) return;
    streamDetail.textContent = text;
    streamDetail.hidden = !text;
  }

  function pollHealth() {
    if (state.stopped || !state.streamDownReason) return streamUp();
    const url = (streamDetail && streamDetail.dataset.healthUrl) || "/healthz";
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (health) {
        if (!state.streamDownReason) return;  // it came back meanwhile
        const components = health.components || {};
        const down = Object.keys(components).filter(function (name) { return components[name].status === "down"; });
        strip.dataset.healthDown = down.join(" ");
        if (down.length) {
          showStreamDetail("Down on the server: " + down.join(", ") + ".");
        } else {
          showStreamDetail("The server reports every part up: reconnecting.");
          reconnectSoon();
        }
      })
      .catch(function () {
        if (state.streamDownReason) showStreamDetail("The server does not answer.");
      });
  }

  /** The server is whole again: try now rather than at the end of a long backoff. */
  function reconnectSoon() {
    if (state.ws || !state.reconnectTimer || state.reconnectAt - Date.now() < HEALTH_POLL_MS) return;
    window.clearTimeout(state.reconnectTimer);
    connect();
  }

  /** Re-read bars and status from the dashboard page (no navigation). Resolves to ok | unauthorized | gone | error. */
  function resync() {
    const asked = ++state.overlaysAsked;
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === (chart.dataset.loginUrl || "/accounts/login/")) {
          stopForGood("closed", 'Session expired. <a href="' + loginUrl() + '">Log in again</a>.');
          return "unauthorized";
        }
        if (response.status === 404) {
          stopForGood("closed", "This market is not available any more.");
          return "gone";
        }
        if (!response.ok) return "error";
        return response.text().then(function (html) {
          const doc = new DOMParser().parseFromString(html, "text/html");
          const node = doc.getElementById("dashboard-initial");
          if (!node) return "error";
          const fresh = JSON.parse(node.textContent);
          (fresh.bars || []).forEach(upsertBar);
          if (fresh.status) applyStatus(fresh.status);
          if ("model" in fresh) state.model = fresh.model;
          if (fresh.chart) applyOverlays(fresh.chart, asked);
          if (fresh.prediction) applyPrediction(fresh.prediction);
          renderPrediction();
          // The page's own choice (pending first) is the truth after a gap in the stream.
          if ("recommendation" in fresh) { state.recommendation = fresh.recommendation; renderRecommendation(); }
          if ("account" in fresh) {
            state.account = fresh.account;
            state.positions = openPositions(fresh.positions);
            renderAccount();
          }
          state.lastHeardMs = Date.now();
          render();
          tick();
          return "ok";
        });
      })
      .catch(function () { return "error"; });
  }

  // ---- start --------------------------------------------------------------------------------------

  // Plotly's own "responsive" only follows the window; the strip above can change height too.
  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(function () {
      if (chart.dataset.ready === "true") window.Plotly.Plots.resize(chart);
    }).observe(chart);
  }

  initial.bars.forEach(upsertBar);
  applyOverlays(initial.chart);
  applyStatus(initial.status);
  renderPrediction();
  renderRecommendation();
  renderAccount();
  if (rui && rui.approve) {
    rui.approve.addEventListener("click", function () { decide("approve"); });
    rui.reject.addEventListener("click", function () { decide("reject"); });
  }
  Promise.resolve(render()).then(function () {
    chart.on("plotly_relayout", onRelayout);
    chart.dataset.ready = "true";
  });
  ui.follow.addEventListener("click", backToLive);
  tick();
  window.setInterval(tick, 1000);
  connect();
})();
