// The dashboard's live progress: polls /dashboard/progress.json every few seconds and
// redraws the "Runs in progress" table (done / total, bar, ETA) without reloading the page.
// Text is set with textContent only: nothing from the server is parsed as HTML.
(function () {
  "use strict";
  var section = document.getElementById("progress");
  if (!section) return;
  var every = parseInt(section.getAttribute("data-poll-ms"), 10) || 3000;
  var url = section.getAttribute("data-src");
  var body = section.querySelector("tbody");
  var empty = section.querySelector(".none");
  var stamp = section.querySelector(".updated");

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function draw(data) {
    while (body.firstChild) body.removeChild(body.firstChild);
    data.runs.forEach(function (run) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-run", run.id);
      cell(tr, run.id.slice(0, 8));
      cell(tr, run.kind);
      cell(tr, run.channel);
      var bar = cell(tr, "", "progress-cell");
      var outer = document.createElement("div");
      outer.className = "pbar";
      var inner = document.createElement("i");
      var pct = run.progress.percent;
      inner.style.width = (pct === null ? 0 : pct) + "%";
      outer.appendChild(inner);
      bar.appendChild(outer);
      cell(tr, run.text, "progress-text");
      body.appendChild(tr);
    });
    empty.hidden = data.runs.length > 0;
    section.querySelector("table").hidden = data.runs.length === 0;
    stamp.textContent = "updated " + new Date(data.now).toLocaleTimeString();
    section.setAttribute("data-updated", data.now);
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(draw)
      .catch(function (why) { stamp.textContent = "progress unavailable (" + why + ")"; })
      .then(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
