/*
 * A small PVWS client for the UI's pages: the websocket this server answers at /pvws/pv
 * (docs/pvws.md), spoken as PVWS's own pvws.js speaks it.
 *
 * Why not PVWS's pvws.js itself: the UI fetches nothing from outside, and a chart needs only
 * one number and a time per update, so this decodes exactly that.  It merges each update
 * into a per-PV state as pvws.js does (later updates carry only what changed), re-subscribes
 * after a reconnect (pvws.js leaves that to the application), and never asks the server for
 * more than its throttle gives: the server decides the rate.
 */
"use strict";

const PVWS = (() => {
  const RECONNECT_MS = 5000;
  // little-endian element 0 of PVWS's base64 arrays (docs/pvws.md)
  const B64 = [
    ["b64dbl", 8, (v) => v.getFloat64(0, true)],
    ["b64flt", 4, (v) => v.getFloat32(0, true)],
    ["b64srt", 2, (v) => v.getInt16(0, true)],
    ["b64int", 4, (v) => v.getInt32(0, true)],
    ["b64byt", 1, (v) => v.getInt8(0)],
  ];

  /* ws://HOST/pvws/pv on the page's own origin (wss:// behind HTTPS). */
  function url() {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${window.location.host}/pvws/pv`;
  }

  function firstOfB64(text, size, read) {
    const bin = atob(text);
    if (bin.length < size) return null;
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = bin.charCodeAt(i);
    return read(new DataView(bytes.buffer));
  }

  /*
   * What a chart draws for one update message: {t, y} with t in epoch seconds and y a number
   * or null (a gap: disconnected, NaN), or null when the message carries no value (only
   * `readonly`, or a string PV's `text`).  Arrays give their element 0, as the archived
   * waveforms are drawn.
   */
  function sampleOf(msg) {
    if (typeof msg.seconds !== "number") return null;
    const t = msg.seconds + (msg.nanos || 0) / 1e9;
    if ("value" in msg) {
      const v = msg.value;
      return { t, y: typeof v === "number" && Number.isFinite(v) ? v : null };
    }
    for (const [field, size, read] of B64) {
      if (field in msg) {
        const y = firstOfB64(msg[field], size, read);
        return { t, y: Number.isFinite(y) ? y : null };
      }
    }
    return null;
  }

  /*
   * One socket subscribed to `names`.  onUpdate(name, state, msg) gets every update with the
   * PV's merged state; onState(state) gets "connecting", "open", "closed" (it retries after
   * RECONNECT_MS) and finally "off" after close().
   */
  class Client {
    constructor(names, onUpdate, onState) {
      this.names = names.slice();
      this.onUpdate = onUpdate;
      this.onState = onState || (() => {});
      this.states = new Map();
      this.updates = 0;
      this.ws = null;
      this.timer = null;
      this.closed = false;
      this.open();
    }

    open() {
      if (this.closed) return;
      this.onState("connecting");
      let ws;
      try {
        ws = new WebSocket(url());
      } catch (e) {
        this.retry();
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: "subscribe", pvs: this.names }));
        this.onState("open");
      };
      ws.onmessage = (ev) => this.receive(ev.data);
      ws.onclose = () => {
        if (this.ws === ws) {
          this.ws = null;
          this.retry();
        }
      };
    }

    retry() {
      if (this.closed) return;
      this.onState("closed");
      this.timer = setTimeout(() => this.open(), RECONNECT_MS);
    }

    receive(text) {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (e) {
        return;
      }
      if (!msg || msg.type !== "update" || typeof msg.pv !== "string") return;
      const state = this.states.get(msg.pv) || { pv: msg.pv, readonly: true };
      Object.assign(state, msg);
      this.states.set(msg.pv, state);
      this.updates += 1;
      this.onUpdate(msg.pv, state, msg);
    }

    close() {
      this.closed = true;
      clearTimeout(this.timer);
      const ws = this.ws;
      this.ws = null;
      if (ws) ws.close();
      this.onState("off");
    }
  }

  return { Client, sampleOf, url };
})();
