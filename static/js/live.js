/* The market websocket for MinhOS's pages (the dashboard keeps its own, with its resume protocol): connect,
   reconnect with backoff, stop for good on 4401 (log in again) and 4404 (no such market). Every message is
   dispatched on `document` as a "minhos:message" event (detail: the message), and each (re)connection's first
   message as "minhos:connected" before it, so any module of the page (the alerts strip too) can listen. */

export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_UNKNOWN_MARKET = 4404;
export const CLOSE_STREAM_UNAVAILABLE = 4503;
const BACKOFF_MAX_MS = 30000;

export function socketUrl(symbol, timeframe) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return scheme + "://" + window.location.host + "/ws/market/" + encodeURIComponent(symbol) + "/" +
    encodeURIComponent(timeframe) + "/";
}

/** onState(state, detail): "connecting" | "open" | "reconnecting" | "down" | "unauthenticated" | "gone". */
export function connectMarket({ symbol, timeframe, onState = function () {} }) {
  let attempts = 0;
  let stopped = false;
  let socket = null;
  let timer = null;

  function connect() {
    if (stopped) return;
    timer = null;
    onState(attempts ? "reconnecting" : "connecting");
    let live = false;
    const ws = new WebSocket(socketUrl(symbol, timeframe));
    socket = ws;
    ws.onmessage = function (event) {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      // Live from the server's first message: a socket accepted only to be closed with 4503 sends none.
      if (!live) {
        live = true;
        attempts = 0;
        onState("open");
        document.dispatchEvent(new CustomEvent("minhos:connected"));
      }
      document.dispatchEvent(new CustomEvent("minhos:message", { detail: msg }));
    };
    ws.onclose = function (event) {
      if (socket === ws) socket = null;
      if (stopped) return;
      if (event.code === CLOSE_UNAUTHENTICATED) { stopped = true; onState("unauthenticated"); return; }
      if (event.code === CLOSE_UNKNOWN_MARKET) { stopped = true; onState("gone"); return; }
      const delay = Math.round(Math.min(BACKOFF_MAX_MS, 1000 * Math.pow(2, attempts)) * (0.8 + 0.4 * Math.random()));
      attempts += 1;
      onState(event.code === CLOSE_STREAM_UNAVAILABLE || !live ? "down" : "reconnecting", { retryMs: delay });
      timer = window.setTimeout(connect, delay);
    };
  }

  connect();
  return {
    close() {
      stopped = true;
      if (timer) window.clearTimeout(timer);
      if (socket) socket.close();
    },
  };
}
