// grenier's operator page: poll /_grenier/dashboard.json each second, and send the inspect and purge forms to
// /_grenier/cache. Plain DOM, no framework; text only ever goes in through textContent.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const text = (id, value) => {
    const el = $(id);
    if (el && el.textContent !== String(value)) el.textContent = String(value);
  };

  function row(job) {
    const tr = document.createElement("tr");
    const code = document.createElement("code");
    code.textContent = job.id || "";
    const cells = [
      code,
      job.url || "",
      `${job.state || ""} (${job.outcome || ""})`,
      job.status === null || job.status === undefined ? "" : String(job.status),
      `${Number(job.seconds || 0).toFixed(3)} s`,
    ];
    for (const cell of cells) {
      const td = document.createElement("td");
      if (typeof cell === "string") td.textContent = cell;
      else td.appendChild(cell);
      tr.appendChild(td);
    }
    return tr;
  }

  function show(doc) {
    for (const [name, value] of Object.entries(doc.counters || {})) text(`c-${name}`, value);
    text("hit-ratio", doc.hit_ratio === null ? "-" : `${(doc.hit_ratio * 100).toFixed(1)} %`);
    text("queue", doc.queue === null ? "-" : doc.queue);
    if (doc.store) {
      text("store-keys", doc.store.keys || 0);
      text("store-bytes", doc.store.bytes || 0);
    }
    text("errors", Object.entries(doc.errors || {}).map(([k, v]) => `${k} ${v}`).join("; "));
    const body = $("jobs");
    if (body && Array.isArray(doc.jobs)) {
      const rows = doc.jobs.length ? doc.jobs.map(row) : [];
      if (!rows.length) {
        const tr = document.createElement("tr");
        const td = document.createElement("td");
        td.colSpan = 5;
        td.textContent = "no job has ended yet";
        tr.appendChild(td);
        rows.push(tr);
      }
      body.replaceChildren(...rows);
    }
  }

  async function poll() {
    try {
      const reply = await fetch("/_grenier/dashboard.json", { cache: "no-store" });
      if (reply.ok) show(await reply.json());
      else text("errors", `dashboard.json answered ${reply.status}`);
    } catch (err) {
      text("errors", `grenier does not answer (${err})`);
    }
  }

  async function answer(reply) {
    const body = await reply.text();
    try {
      return `${reply.status}\n${JSON.stringify(JSON.parse(body), null, 2)}`;
    } catch (_) {
      return `${reply.status}\n${body}`;
    }
  }

  $("inspect").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = new URLSearchParams({ url: $("inspect-url").value });
    text("inspect-result", "…");
    text("inspect-result", await answer(await fetch(`/_grenier/cache?${query}`, { cache: "no-store" })));
  });

  $("purge").addEventListener("submit", async (event) => {
    event.preventDefault();
    const by = $("purge-by").value;
    const query = new URLSearchParams(by === "all" ? { all: "1" } : { [by]: $("purge-value").value });
    if ($("purge-soft").checked) query.set("soft", "1");
    text("purge-result", "…");
    text("purge-result", await answer(await fetch(`/_grenier/cache?${query}`, { method: "DELETE" })));
    poll();
  });

  setInterval(poll, 1000);
})();
