/* The backtest start form: the stored bars of the chosen market and timeframe, shown above the window and set as
   the from/to inputs' limits. The server renders the first market's range; this follows the two selects. */
const form = document.getElementById("backtest-form");
const note = document.getElementById("bt-range");

if (form && note) {
  const symbol = form.querySelector("#bt-symbol");
  const timeframe = form.querySelector("#bt-timeframe");
  const inputs = [form.querySelector("#bt-from"), form.querySelector("#bt-to")];
  let asked = 0;  // the newest question: an older answer arriving late must not overwrite it

  /* Limits and text from the endpoint's answer; a value outside the new range (or none) takes the default window. */
  function apply(range) {
    note.textContent = range.text;
    Object.assign(note.dataset, { symbol: range.symbol, timeframe: range.timeframe, count: String(range.count), state: "ready" });
    const defaults = [range.default_from, range.default_to];
    inputs.forEach((input, i) => {
      if (range.first) {
        input.min = range.first;
        input.max = range.last;
      } else {
        input.removeAttribute("min");
        input.removeAttribute("max");
      }
      // "YYYY-MM-DDTHH:MM" strings order as the times they name.
      const value = input.value.slice(0, 16);
      if (!value || (range.first && (value < range.first || value > range.last))) input.value = defaults[i] || "";
    });
  }

  async function update() {
    const ticket = ++asked;
    const url = new URL(note.dataset.url, window.location.href);
    url.searchParams.set("symbol", symbol.value);
    url.searchParams.set("timeframe", timeframe.value);
    note.dataset.state = "loading";
    let range;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      range = await response.json();
      if (!response.ok) throw new Error(range.error || `${response.status} ${response.statusText}`);
    } catch (error) {
      if (ticket === asked) {
        note.textContent = `The stored range could not be read: ${error.message}`;
        note.dataset.state = "error";
      }
      return;
    }
    if (ticket === asked) apply(range);
  }

  symbol.addEventListener("change", update);
  timeframe.addEventListener("change", update);
  // After a back navigation the browser may restore another choice than the one the server rendered the range for.
  if (note.dataset.symbol !== symbol.value || note.dataset.timeframe !== timeframe.value) update();
  else note.dataset.state = "ready";
}
