// format.js: numbers and times as people read them.

export function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

export function rate(bps) {
  if (!bps) return "0 B/s";
  return bytes(Math.round(bps)) + "/s";
}

// age says how long ago t (an RFC 3339 string or ms) was, at now (ms).
export function age(t, now) {
  const ms = typeof t === "number" ? t : Date.parse(t);
  if (!ms || ms <= 0) return "";
  let s = Math.max(0, Math.floor((now - ms) / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m}m ${s}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

// basename is a path's last element (an application's name).
export function basename(p) {
  if (!p) return "";
  const i = p.lastIndexOf("/");
  const j = p.lastIndexOf("\\");
  return p.slice(Math.max(i, j) + 1);
}

// list shows a config list (or a single value) as one line.
export function list(v) {
  if (v === undefined || v === null || v === "") return "";
  return Array.isArray(v) ? v.join(", ") : String(v);
}
