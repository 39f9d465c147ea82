// Herald console: the live tail (Server-Sent Events), confirmations and "select all".
// Every value from the server is put into the page as text, never as HTML.
"use strict";

function tail(table) {
  const body = table.tBodies[0];
  const status = document.getElementById("tail-status");
  const max = Number(table.dataset.max || 200);
  const url = "/api/v1/topics/" + encodeURIComponent(table.dataset.topic) + "/events?from=latest";
  const events = new EventSource(url);
  events.onopen = () => { status.textContent = "live"; };
  events.onerror = () => { status.textContent = "reconnecting…"; };
  events.onmessage = (e) => {
    const r = JSON.parse(e.data);
    const when = new Date(r.timestamp);
    const cells = [r.partition, r.offset, isNaN(when.getTime()) ? r.timestamp : when.toISOString(), r.key ?? "",
      (r.headers && r.headers["event-type"]) || "", JSON.stringify(r.value)];
    const row = body.insertRow(0);
    for (const value of cells) { row.insertCell().textContent = String(value); }
    row.dataset.offset = r.offset;
    while (body.rows.length > max) { body.deleteRow(body.rows.length - 1); }
    table.dataset.received = String(Number(table.dataset.received || 0) + 1);
  };
  window.heraldTail = events;
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("tail");
  if (table) { tail(table); }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) { e.preventDefault(); }
    });
  }
  for (const box of document.querySelectorAll("input[data-select-all]")) {
    box.addEventListener("change", () => {
      for (const other of document.querySelectorAll("input[name='" + box.dataset.selectAll + "']")) {
        other.checked = box.checked;
      }
    });
  }
});
