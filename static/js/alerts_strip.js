/* The alerts strip of every logged-in page: unresolved alerts by severity and the newest one, kept live from the
   "alert.opened" / "alert.acknowledged" / "alert.resolved" messages of the page's websocket (the server sends them
   to every open page), with a short notice when one resolves. After a reconnect it reads the figures again, since
   messages sent while the socket was down are not replayed. */
import { setText, show } from "./format.js";

const SEVERITIES = ["critical", "warning", "info"];
const TOAST_MS = 8000;

const strip = document.getElementById("alerts-strip");
const initialEl = document.getElementById("alerts-strip-initial");
if (strip && initialEl) start(strip, JSON.parse(initialEl.textContent));

function start(strip, initial) {
  const alerts = new Map();
  const toast = document.getElementById("alerts-toast");
  const newest = document.getElementById("alerts-newest");
  const none = strip.querySelector(".alerts-none");
  let toastTimer = null;

  function load(list) {
    alerts.clear();
    (list || []).forEach(function (a) { alerts.set(a.id, a); });
  }

  function marketOf(a) {
    if (a.market) return a.market;
    return a.symbol ? a.symbol + " " + a.timeframe : "all markets";
  }

  /** Its message, after its market unless the message already names it (monitoring/page.py strip_text). */
  function lineOf(a) {
    const market = marketOf(a);
    return a.message.indexOf(market) === 0 ? a.message : market + ": " + a.message;
  }

  function render() {
    const counts = Object.fromEntries(SEVERITIES.map(function (s) { return [s, 0]; }));
    let latest = null;
    alerts.forEach(function (a) {
      counts[a.severity] = (counts[a.severity] || 0) + 1;
      if (!latest || a.opened_at > latest.opened_at || (a.opened_at === latest.opened_at && a.id > latest.id)) latest = a;
    });
    SEVERITIES.forEach(function (severity) {
      const pill = strip.querySelector('.sev-pill[data-severity="' + severity + '"]');
      if (!pill) return;
      pill.firstChild.nodeValue = String(counts[severity]);
      pill.title = counts[severity] + " " + severity;
      show(pill, counts[severity] > 0);
    });
    strip.dataset.total = String(alerts.size);
    strip.dataset.worst = SEVERITIES.find(function (s) { return counts[s] > 0; }) || "";
    show(none, alerts.size === 0);
    show(newest, latest !== null);
    setText(newest, latest ? lineOf(latest) : "");
    if (latest) strip.dataset.newest = String(latest.id); else delete strip.dataset.newest;
  }

  function flash() {
    strip.classList.remove("flash");
    void strip.offsetWidth;  // restart the animation
    strip.classList.add("flash");
  }

  function notice(text, lead) {
    if (!toast) return;
    const head = document.createElement("b");
    head.textContent = lead;
    toast.replaceChildren(head, " " + text);
    toast.hidden = false;
    if (toastTimer) window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(function () { toast.hidden = true; }, TOAST_MS);
  }

  function handle(msg, { quiet = false } = {}) {
    if (!msg || typeof msg.type !== "string" || msg.type.indexOf("alert.") !== 0 || msg.id === undefined) return;
    strip.dataset.lastEvent = msg.type + ":" + msg.id;
    if (msg.type === "alert.resolved") {
      alerts.delete(msg.id);
      if (!quiet) notice(lineOf(msg), "Resolved");
    } else if (msg.type === "alert.opened" || msg.type === "alert.acknowledged") {
      const known = alerts.has(msg.id);
      alerts.set(msg.id, {
        id: msg.id, severity: msg.severity, status: msg.status, message: msg.message, market: marketOf(msg),
        opened_at: msg.opened_at,
      });
      if (!known && !quiet) flash();
    }
    render();
  }

  // Messages that arrive while the figures are being read again are applied again on top of the answer.
  let heard = null;

  function reread() {
    heard = [];
    fetch(strip.dataset.summaryUrl, { credentials: "same-origin", cache: "no-store",
                                       headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok && !response.redirected ? response.json() : null; })
      .then(function (summary) {
        const since = heard || [];
        heard = null;
        if (!summary) return;
        load(summary.alerts);
        since.forEach(function (msg) { handle(msg, { quiet: true }); });
        render();
      })
      .catch(function () { heard = null; /* the next reconnect reads them again */ });
  }

  document.addEventListener("minhos:message", function (event) {
    if (heard && event.detail && typeof event.detail.type === "string" && event.detail.type.indexOf("alert.") === 0) {
      heard.push(event.detail);
    }
    handle(event.detail);
  });
  // Alerts may have changed between the page's rendering and the socket's first message, or while it was down.
  document.addEventListener("minhos:connected", reread);
  load(initial.alerts);
  render();
  strip.dataset.ready = "true";
}
