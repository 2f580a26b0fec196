// api.js talks to the console's API with relative URLs only, so that the
// pages work under "/" and under "/console/" alike.

// APIError is an error the API answered with ({"error": "..."}), or a
// failure to reach it. body is the decoded JSON when there was one (a 422
// from a config PUT carries its errors there).
export class APIError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// api calls path (relative to api/v1/) and returns the decoded JSON.
// State-changing calls always send a JSON body, as the API requires.
export async function api(method, path, body) {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body === undefined ? {} : body);
  }
  let res;
  try {
    res = await fetch("api/v1/" + path, opts);
  } catch (e) {
    throw new APIError("shunt does not answer: " + e.message, 0, null);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    let msg = (data && data.error) || `${res.status} ${res.statusText}`;
    if (res.status === 401) {
      msg = "Not logged in: open the URL that `shunt console` prints.";
    }
    throw new APIError(msg, res.status, data);
  }
  return data;
}

// seg escapes one path segment (a profile name, a prompt id).
export const seg = (s) => encodeURIComponent(String(s));
