/*
 * Named flags page: every flag the appliance knows (getAllNamedFlags), set one
 * (setNamedFlag?name=&value=true|false) and read one (getNamedFlag?name=).  Flag names are
 * exact (case matters, nothing trimmed but the ends of what is typed); the server's answer,
 * or its refusal, is shown as it comes.
 */
"use strict";

(() => {
  const nameBox = document.getElementById("flagName");
  const valueSelect = document.getElementById("flagValue");
  const info = document.getElementById("flagsInfo");
  const out = document.getElementById("flagsdiv");

  AA.nav("namedflags.html");

  /* The JSON boolean as the server sends it (getNamedFlag: true/false). */
  const shown = (v) => (typeof v === "boolean" ? String(v) : AA.cellText(v));

  async function load() {
    let flags;
    try {
      flags = (await AA.bpl("getAllNamedFlags")) || {};
    } catch (e) {
      AA.clear(out);
      info.textContent = "";
      AA.message(`getAllNamedFlags: ${e.message}`, "error");
      return;
    }
    const rows = Object.entries(flags)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => ({ name, value: shown(value) }));
    info.textContent = `${rows.length} flag(s) set or loaded (getAllNamedFlags).`;
    AA.clear(out);
    if (!rows.length) {
      out.appendChild(AA.el("p", { id: "flagsEmpty" }, "No named flags are set; every flag reads false."));
      return;
    }
    out.appendChild(AA.table([
      {
        key: "name",
        label: "Flag",
        render: (r) => AA.el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); pick(r); } }, r.name),
      },
      { key: "value", label: "Value" },
    ], rows, { id: "flagsTable", class: "grid flags" }, (r) => ({ "data-flag": r.name, "data-value": r.value })));
  }

  /* A click on a flag's name fills the form with it (to flip it with Set). */
  function pick(row) {
    nameBox.value = row.name;
    valueSelect.value = row.value === "true" ? "false" : "true";
  }

  function typedName() {
    const name = nameBox.value.trim();
    if (!name) throw new Error("Type a flag name first.");
    return name;
  }

  function button(id, fn) {
    document.getElementById(id).addEventListener("click", async () => {
      const buttons = document.querySelectorAll(".toolbar button");
      buttons.forEach((b) => (b.disabled = true));
      try {
        await fn();
      } catch (e) {
        AA.message(e.message || String(e), "error");
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    });
  }

  button("flagSet", async () => {
    const name = typedName();
    const value = valueSelect.value === "true" ? "true" : "false";
    const r = await AA.bpl("setNamedFlag", { name, value });
    if (r && r.validation) throw new Error(r.validation);
    AA.message(`Set ${name} to ${value}.`, "ok");
    await load();
  });

  button("flagGet", async () => {
    const name = typedName();
    const r = (await AA.bpl("getNamedFlag", { name })) || {};
    const value = Object.prototype.hasOwnProperty.call(r, name) ? shown(r[name]) : JSON.stringify(r);
    AA.message(`${name} is ${value}`, "ok");
  });

  button("flagsRefresh", load);

  nameBox.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") document.getElementById("flagGet").click();
  });

  const wanted = AA.params().get("name");
  if (wanted) nameBox.value = wanted;
  load();
})();
