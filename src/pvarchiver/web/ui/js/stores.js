/*
 * A PV's store chain in plain words, for the PV details page.
 *
 * The server answers store URLs as the typeinfo keeps them (getStoresForPV: {name: url}, in
 * the chain's order), with the AA's folder macros unexpanded; this file reads each URL's
 * query (name, rootFolder, partitionGranularity, hold, gather, reducedata, pp) and says how
 * long a sample stays in each store and where it goes next, so a site can see at a glance
 * that a "3 days then deleted" policy really ends in a blackhole.  No server call here.
 */
"use strict";

const AAStores = (() => {
  /* partitionGranularity -> [how many, unit] of one partition */
  const PARTITION = {
    PARTITION_5MIN: [5, "minute"],
    PARTITION_15MIN: [15, "minute"],
    PARTITION_30MIN: [30, "minute"],
    PARTITION_HOUR: [1, "hour"],
    PARTITION_DAY: [1, "day"],
    PARTITION_MONTH: [1, "month"],
    PARTITION_YEAR: [1, "year"],
  };

  /* The AA's ArchDBRTypes names, for changeTypeForPV's newtype. */
  const DBR_TYPES = [
    "DBR_SCALAR_STRING", "DBR_SCALAR_SHORT", "DBR_SCALAR_FLOAT", "DBR_SCALAR_ENUM",
    "DBR_SCALAR_BYTE", "DBR_SCALAR_INT", "DBR_SCALAR_DOUBLE",
    "DBR_WAVEFORM_STRING", "DBR_WAVEFORM_SHORT", "DBR_WAVEFORM_FLOAT", "DBR_WAVEFORM_ENUM",
    "DBR_WAVEFORM_BYTE", "DBR_WAVEFORM_INT", "DBR_WAVEFORM_DOUBLE", "DBR_V4_GENERIC_BYTES",
  ];

  /* A count that is a whole number >= 0, else null (absent, empty or not a number). */
  function count(text) {
    if (text === null || text === undefined || !/^\s*\d+\s*$/.test(text)) return null;
    return Number(text);
  }

  /* One store of the chain: name (the key of getStoresForPV), kind (the URL's scheme: pb,
     blackhole, ...) and the query keys that decide where its data go. */
  function parse(name, url) {
    const text = String(url || "");
    const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/[^?]*(?:\?(.*))?$/.exec(text);
    const q = new URLSearchParams(m && m[2] ? m[2] : "");
    return {
      name: String(name || q.get("name") || ""),
      url: text,
      kind: m ? m[1].toLowerCase() : "unknown",
      folder: q.get("rootFolder") || "",
      granularity: q.get("partitionGranularity") || "",
      hold: count(q.get("hold")),
      gather: count(q.get("gather")),
      reducedata: q.get("reducedata") || "",
      pp: q.getAll("pp").filter((p) => p),
    };
  }

  /* n partitions of the store as a duration: "3 days", "1 hour", "15 minutes". */
  function span(store, n) {
    const unit = PARTITION[store.granularity];
    if (!unit) return `${n} partition${n === 1 ? "" : "s"}`;
    const total = unit[0] * n;
    return `${total} ${unit[1]}${total === 1 ? "" : "s"}`;
  }

  /* How long a sample stays in the store at index i and where it goes: ETL moves a file once
     its first sample is older than `hold` partitions (hold 0: as soon as its partition is
     over), into the next store; a blackhole next deletes it, no next store keeps it. */
  function retentionOf(stores, i) {
    const s = stores[i];
    if (s.kind === "blackhole") {
      return i === 0 ? "discarded at once: the first store is a blackhole" : "deletes what it receives";
    }
    const next = stores[i + 1];
    if (!next) return `kept forever in ${s.name}`;
    const keep = s.hold ? span(s, s.hold) : `up to ${span(s, 1)}`;
    if (next.kind === "blackhole") return `kept ${keep} in ${s.name}, then deleted`;
    const reduced = next.reducedata ? ` (reduced with ${next.reducedata})` : "";
    return `kept ${keep} in ${s.name}, then moved to ${next.name}${reduced}`;
  }

  /* {name: url} in chain order -> [{...parse(), retention}] */
  function chain(storesForPV) {
    const stores = Object.entries(storesForPV || {}).map(([name, url]) => parse(name, url));
    stores.forEach((s, i) => (s.retention = retentionOf(stores, i)));
    return stores;
  }

  /* The whole chain in one line: each real store's sentence (a blackhole's own is implied). */
  function summary(stores) {
    const parts = stores
      .filter((s, i) => s.kind !== "blackhole" || i === 0)
      .map((s) => s.retention);
    if (!parts.length) return "";
    const line = parts.join("; ");
    return line.charAt(0).toUpperCase() + line.slice(1) + ".";
  }

  return { DBR_TYPES, parse, chain, summary, span };
})();
