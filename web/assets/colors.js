// Consistent nick colours, XEP-0392 §5: the hue angle comes from SHA-1 of the nick (UTF-8),
// its first two bytes read as a little-endian 16-bit number, scaled to 0..360; the colour is
// HSLuv(hue, saturation, lightness) with saturation and lightness chosen for contrast.
//
// The spec leaves saturation and lightness to the implementation (§5.2, §7.2). HSLuv's
// lightness is CIE L*, which fixes the luminance, so a lightness band fixes the contrast with
// the page whatever the hue: on the light backgrounds (white, the own-message and mention tints)
// L* 30–44 keeps at least 4.5:1, on the dark ones L* 70–86 does. Within the band the third byte
// of the same hash picks one of three steps, so that two nicks of close hue (alice and bob are
// both olive) usually differ in lightness too.

const cache = new Map();

const LIGHTNESS = { light: [30, 37, 44], dark: [70, 78, 86] };

async function digestOf(id) {
  const bytes = new TextEncoder().encode(id);
  return crypto.subtle ? new Uint8Array(await crypto.subtle.digest('SHA-1', bytes)) : sha1(bytes);
}

/** XEP-0392 §5.1: the hue angle in degrees for an identifier. */
export async function hueAngle(id) {
  const digest = await digestOf(id);
  return ((digest[0] | (digest[1] << 8)) / 65536) * 360;
}

/** A CSS colour for a nick, on a light or a dark background. */
export async function nickColor(nick, dark) {
  const key = (dark ? 'd' : 'l') + nick;
  if (cache.has(key)) return cache.get(key);
  const digest = await digestOf(nick);
  const hue = ((digest[0] | (digest[1] << 8)) / 65536) * 360;
  const [r, g, b] = hsluvToRgb(hue, 100, LIGHTNESS[dark ? 'dark' : 'light'][digest[2] % 3]);
  const css = `rgb(${Math.round(r * 255)},${Math.round(g * 255)},${Math.round(b * 255)})`;
  cache.set(key, css);
  return css;
}

export function cachedColor(nick, dark) {
  return cache.get((dark ? 'd' : 'l') + nick);
}

// -- HSLuv (www.hsluv.org), hsluvToRgb only ------------------------------------------------
const M = [
  [3.240969941904521, -1.537383177570093, -0.498610760293],
  [-0.96924363628087, 1.87596750150772, 0.041555057407175],
  [0.055630079696993, -0.20397695888897, 1.056971514242878],
];
const REF_U = 0.19783000664283, REF_V = 0.46831999493879;
const KAPPA = 903.2962962, EPSILON = 0.0088564516;

function bounds(L) {
  const out = [];
  const sub1 = (L + 16) ** 3 / 1560896;
  const sub2 = sub1 > EPSILON ? sub1 : L / KAPPA;
  for (const [m1, m2, m3] of M) {
    for (const t of [0, 1]) {
      const top1 = (284517 * m1 - 94839 * m3) * sub2;
      const top2 = (838422 * m3 + 769860 * m2 + 731718 * m1) * L * sub2 - 769860 * t * L;
      const bottom = (632260 * m3 - 126452 * m2) * sub2 + 126452 * t;
      out.push([top1 / bottom, top2 / bottom]);
    }
  }
  return out;
}

function maxChroma(L, H) {
  const hrad = (H / 360) * Math.PI * 2;
  let min = Infinity;
  for (const [slope, intercept] of bounds(L)) {
    const len = intercept / (Math.sin(hrad) - slope * Math.cos(hrad));
    if (len >= 0) min = Math.min(min, len);
  }
  return min;
}

const fromLinear = (c) => (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055);
const clamp = (v) => Math.min(1, Math.max(0, v));

export function hsluvToRgb(H, S, L) {
  if (L > 99.9999999) return [1, 1, 1];
  if (L < 1e-8) return [0, 0, 0];
  const C = (maxChroma(L, H) / 100) * S;
  const hrad = (H / 360) * Math.PI * 2;
  const U = Math.cos(hrad) * C, V = Math.sin(hrad) * C;
  const varU = U / (13 * L) + REF_U, varV = V / (13 * L) + REF_V;
  const Y = L <= 8 ? L / KAPPA : ((L + 16) / 116) ** 3;
  const X = 0 - (9 * Y * varU) / ((varU - 4) * varV - varU * varV);
  const Z = (9 * Y - 15 * varV * Y - varV * X) / (3 * varV);
  return M.map(([a, b, c]) => clamp(fromLinear(a * X + b * Y + c * Z)));
}

// -- SHA-1 for pages outside a secure context, where crypto.subtle is missing ---------------
function sha1(bytes) {
  const len = bytes.length, words = new Uint32Array((((len + 8) >> 6) + 1) * 16);
  for (let i = 0; i < len; i++) words[i >> 2] |= bytes[i] << (24 - (i % 4) * 8);
  words[len >> 2] |= 0x80 << (24 - (len % 4) * 8);
  words[words.length - 1] = len * 8;
  let [a, b, c, d, e] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];
  const w = new Uint32Array(80), rol = (v, n) => (v << n) | (v >>> (32 - n));
  for (let i = 0; i < words.length; i += 16) {
    for (let j = 0; j < 80; j++) w[j] = j < 16 ? words[i + j] : rol(w[j - 3] ^ w[j - 8] ^ w[j - 14] ^ w[j - 16], 1);
    let [A, B, C, D, E] = [a, b, c, d, e];
    for (let j = 0; j < 80; j++) {
      const f = j < 20 ? (B & C) | (~B & D) : j < 40 ? B ^ C ^ D : j < 60 ? (B & C) | (B & D) | (C & D) : B ^ C ^ D;
      const k = j < 20 ? 0x5a827999 : j < 40 ? 0x6ed9eba1 : j < 60 ? 0x8f1bbcdc : 0xca62c1d6;
      const tmp = (rol(A, 5) + f + E + k + w[j]) >>> 0;
      [E, D, C, B, A] = [D, C, rol(B, 30) >>> 0, A, tmp];
    }
    a = (a + A) >>> 0; b = (b + B) >>> 0; c = (c + C) >>> 0; d = (d + D) >>> 0; e = (e + E) >>> 0;
  }
  const out = new Uint8Array(20);
  [a, b, c, d, e].forEach((v, i) => { out[i * 4] = v >>> 24; out[i * 4 + 1] = (v >>> 16) & 255; out[i * 4 + 2] = (v >>> 8) & 255; out[i * 4 + 3] = v & 255; });
  return out;
}
export { sha1 as _sha1 };
