// pymap: small progressive enhancements. Every page works without this file; with it,
// task pages update live over SSE, logs tail, hosts resolve as you type and the new
// migration form keeps the pasted batch when the server answers with errors.
"use strict";
(() => {
  const $$ = (s, r = document) => r.querySelectorAll(s);
  const on = (el, ev, f) => el.addEventListener(ev, f);

  // Replace elements by id with server-rendered HTML (escaped by the server).
  const swap = (id, html) => {
    const old = document.getElementById(id);
    if (!old) return;
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    if (t.content.firstElementChild) old.replaceWith(t.content.firstElementChild);
  };

  // Live sections: the server sends {id, html} pairs; "stale" means we missed events.
  const live = (el) => {
    const dot = document.getElementById("live");
    const es = new EventSource(el.dataset.sse);
    on(es, "open", () => dot && dot.classList.add("on"));
    on(es, "error", () => dot && dot.classList.remove("on"));
    on(es, "swap", (e) => JSON.parse(e.data).forEach((p) => swap(p.id, p.html)));
    on(es, "stale", () => location.reload());
  };

  // Log tail: lines arrive as text; the follow box keeps the view at the bottom.
  const tail = (pre) => {
    const follow = document.getElementById("follow");
    const dot = document.getElementById("live");
    const down = () => { if (!follow || follow.checked) pre.scrollTop = pre.scrollHeight; };
    down();
    const es = new EventSource(pre.dataset.tail);
    on(es, "open", () => dot && dot.classList.add("on"));
    on(es, "error", () => dot && dot.classList.remove("on"));
    on(es, "lines", (e) => {
      pre.append(document.createTextNode(JSON.parse(e.data).text));
      down();
    });
    follow && on(follow, "change", down);
  };

  // "mx1" -> "mx1.mail.example.com" as you type, from the user's and global patterns.
  const preview = (input) => {
    const out = document.getElementById(input.dataset.preview);
    let timer;
    const run = async () => {
      const v = input.value.trim();
      if (!v) { out.textContent = ""; return; }
      try {
        const r = await fetch("/hosts/preview?host=" + encodeURIComponent(v));
        const j = await r.json();
        out.classList.toggle("bad", !j.ok);
        out.textContent = j.ok ? "→ " + j.resolved + (j.via ? " (" + j.via + ")" : "") : j.error;
      } catch (_) { out.textContent = ""; }
    };
    on(input, "input", () => { clearTimeout(timer); timer = setTimeout(run, 250); });
  };

  // Submit without leaving the page; on errors swap only the named regions, so the
  // batch textarea (passwords, never sent back by the server) keeps its content.
  const asyncForm = (form) => on(form, "submit", async (e) => {
    e.preventDefault();
    const btn = e.submitter;
    const body = new FormData(form);
    if (btn && btn.name) body.append(btn.name, btn.value);
    const url = btn && btn.hasAttribute("formaction") ? btn.formAction : form.action;
    $$("button", form).forEach((b) => (b.disabled = true));
    // A login check of a long batch takes seconds: say so on the button meanwhile.
    const label = btn && btn.textContent;
    if (btn && btn.dataset.busy) btn.textContent = btn.dataset.busy;
    try {
      const r = await fetch(url, { method: "POST", body, headers: { "x-pymap-async": "1" } });
      const to = r.headers.get("x-redirect");
      if (to || r.redirected) { location = to || r.url; return; }
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      form.dataset.swap.split(" ").forEach((id) => {
        const n = doc.getElementById(id);
        if (n) swap(id, n.outerHTML);
      });
      const first = document.querySelector("[data-focus]");
      first && first.focus();
    } finally {
      if (btn) btn.textContent = label;
      $$("button", form).forEach((b) => (b.disabled = false));
    }
  });

  // Links "line 3" in error lists select that line of the batch.
  on(document, "click", (e) => {
    const a = e.target.closest("a[data-line]");
    if (a) {
      const ta = document.getElementById("batch");
      if (!ta || !ta.value) return;
      e.preventDefault();
      const lines = ta.value.split("\n");
      const n = Math.min(+a.dataset.line, lines.length) - 1;
      const start = lines.slice(0, n).join("\n").length + (n ? 1 : 0);
      ta.focus();
      ta.setSelectionRange(start, start + lines[n].length);
    }
    const c = e.target.closest("[data-copy]");
    if (c) {
      const ids = [...$$("input[name=ids]:checked")].map((i) => i.value).join(" ");
      if (!ids) { c.textContent = "Nothing selected"; return; }
      // The clipboard API needs https or localhost; appliances often have neither.
      if (navigator.clipboard && isSecureContext) {
        navigator.clipboard.writeText(ids).then(() => (c.textContent = "Copied " + ids.split(" ").length));
      } else {
        prompt("Task ids:", ids);
      }
    }
  });

  // Dangerous buttons ask first.
  on(document, "submit", (e) => {
    const b = e.submitter;
    const msg = (b && b.dataset.confirm) || e.target.dataset.confirm;
    if (msg && !confirm(msg)) { e.preventDefault(); e.stopImmediatePropagation(); }
  }, true);

  on(document, "change", (e) => {
    const all = e.target.dataset.checkAll;
    if (all) $$("input[name=" + all + "]").forEach((i) => (i.checked = e.target.checked));
  });

  const init = () => {
    $$("[data-sse]").forEach(live);
    $$("[data-tail]").forEach(tail);
    $$("[data-preview]").forEach(preview);
    $$("form[data-swap]").forEach(asyncForm);
    $$("[data-js]").forEach((el) => (el.hidden = false));
  };
  document.readyState === "loading" ? on(document, "DOMContentLoaded", init) : init();
})();
