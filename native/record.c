// The TLS 1.3 record layer of the native data plane: see record.h. Every
// check here is one RFC 8446 asks of a receiver; a peer that fails one gets
// its connection closed (RX_FAIL with the alert's name in the reason), as
// OpenSSL would close it on the node:tls data plane.

#include "record.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "check.h"

#define HS_NEW_SESSION_TICKET 4
#define HS_CERTIFICATE_REQUEST 13
#define HS_KEY_UPDATE 24
#define ALERT_CLOSE_NOTIFY 0
#define ALERT_USER_CANCELED 90

// HKDF-Expand-Label(secret, label, "", len) (§7.1) for len up to the hash's
// size: one HMAC block, so HKDF-Expand is T(1) cut to len.
static bool expand_label(const EVP_MD *md, const uint8_t *secret, size_t secret_len, const char *label, uint8_t *out, size_t len) {
  uint8_t info[2 + 1 + 255 + 1 + 1];
  size_t ll = strlen(label);
  size_t hl = (size_t)EVP_MD_get_size(md);
  // Labels are this file's constants and lengths its own: never a peer's.
  CHECK(ll + 6 <= 255 && len <= hl, "HKDF-Expand-Label arguments");
  size_t k = 0;
  info[k++] = (uint8_t)(len >> 8);
  info[k++] = (uint8_t)len;
  info[k++] = (uint8_t)(6 + ll);
  memcpy(info + k, "tls13 ", 6);
  k += 6;
  memcpy(info + k, label, ll);
  k += ll;
  info[k++] = 0;  // no context
  info[k++] = 1;  // HKDF-Expand's block counter
  uint8_t block[EVP_MAX_MD_SIZE];
  unsigned int bl = 0;
  if (!HMAC(md, secret, (int)secret_len, info, k, block, &bl) || bl != hl) return false;
  memcpy(out, block, len);
  OPENSSL_cleanse(block, sizeof block);
  return true;
}

// Derives the key and nonce base from the secret and gives the key to the cipher context.
static bool aead_key(aead_t *a) {
  uint8_t key[32];
  size_t kl = (size_t)EVP_CIPHER_CTX_get_key_length(a->ctx);
  bool ok = kl <= sizeof key && expand_label(a->md, a->secret, a->secret_len, "key", key, kl) &&
            expand_label(a->md, a->secret, a->secret_len, "iv", a->iv, 12) &&
            EVP_CipherInit_ex(a->ctx, NULL, NULL, key, NULL, a->enc ? 1 : 0) == 1;
  OPENSSL_cleanse(key, sizeof key);
  return ok;
}

bool aead_init(aead_t *a, const char *cipher, const char *hash, const uint8_t *secret, size_t secret_len, uint64_t seq, bool enc) {
  memset(a, 0, sizeof *a);
  const EVP_CIPHER *c = strcmp(cipher, "aes-128-gcm") == 0         ? EVP_aes_128_gcm()
                        : strcmp(cipher, "aes-256-gcm") == 0       ? EVP_aes_256_gcm()
                        : strcmp(cipher, "chacha20-poly1305") == 0 ? EVP_chacha20_poly1305()
                                                                   : NULL;
  a->md = strcmp(hash, "sha256") == 0 ? EVP_sha256() : strcmp(hash, "sha384") == 0 ? EVP_sha384() : NULL;
  if (!c || !a->md || secret_len != (size_t)EVP_MD_get_size(a->md) || secret_len > TLS_MAX_SECRET) return false;
  a->ctx = EVP_CIPHER_CTX_new();
  if (!a->ctx) return false;
  a->enc = enc;
  a->seq = seq;
  memcpy(a->secret, secret, secret_len);
  a->secret_len = secret_len;
  return EVP_CipherInit_ex(a->ctx, c, NULL, NULL, NULL, enc ? 1 : 0) == 1 &&
         EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1 && aead_key(a);
}

void aead_free(aead_t *a) {
  EVP_CIPHER_CTX_free(a->ctx);
  a->ctx = NULL;
  OPENSSL_cleanse(a->secret, sizeof a->secret);
}

bool aead_update(aead_t *a) {
  uint8_t next[TLS_MAX_SECRET];
  if (!expand_label(a->md, a->secret, a->secret_len, "traffic upd", next, a->secret_len)) return false;
  memcpy(a->secret, next, a->secret_len);
  OPENSSL_cleanse(next, sizeof next);
  a->seq = 0;
  a->updates++;
  return aead_key(a);
}

static void nonce(const aead_t *a, uint8_t out[12]) {
  memcpy(out, a->iv, 12);
  for (int i = 0; i < 8; i++) out[11 - i] ^= (uint8_t)(a->seq >> (8 * i));
}

size_t record_seal(aead_t *a, uint8_t type, const uint8_t *in, size_t len, uint8_t *out) {
  // Callers cut plaintext into records of at most TLS_MAX_PLAIN: their loops, not a peer, decide len.
  CHECK(len <= TLS_MAX_PLAIN, "record plaintext too long");
  size_t body = len + 1 + TLS_TAG_LEN;
  out[0] = CT_APPLICATION_DATA;
  out[1] = 3;
  out[2] = 3;
  out[3] = (uint8_t)(body >> 8);
  out[4] = (uint8_t)body;
  uint8_t n[12];
  nonce(a, n);
  int outl = 0, tmp = 0;
  bool ok = EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, n) == 1 && EVP_EncryptUpdate(a->ctx, NULL, &tmp, out, TLS_HDR_LEN) == 1 &&
            EVP_EncryptUpdate(a->ctx, out + TLS_HDR_LEN, &outl, in, (int)len) == 1 &&
            EVP_EncryptUpdate(a->ctx, out + TLS_HDR_LEN + outl, &tmp, &type, 1) == 1;
  outl += tmp;
  ok = ok && EVP_EncryptFinal_ex(a->ctx, out + TLS_HDR_LEN + outl, &tmp) == 1 &&
       EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TLS_TAG_LEN, out + TLS_HDR_LEN + len + 1) == 1;
  // A keyed AEAD context encrypting into memory we own fails only on a broken OpenSSL.
  CHECK(ok, "AEAD seal failed");
  a->seq++;
  return TLS_HDR_LEN + body;
}

void key_update_message(uint8_t out[TLS_KEY_UPDATE_LEN], bool update_requested) {
  out[0] = HS_KEY_UPDATE;
  out[1] = 0;
  out[2] = 0;
  out[3] = 1;
  out[4] = update_requested ? 1 : 0;
}

static rx_result fail(char *reason, size_t reason_len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, reason_len, fmt, ap);
  va_end(ap);
  return RX_FAIL;
}

#define BAD(...) fail(reason, reason_len, "refused:bad_record:" __VA_ARGS__)

// Opens the record at `rec` (header included, `body` bytes after it) in place.
// Returns the content length and sets *type, or -1 (bad tag) or -2 (no content type).
static long open_record(aead_t *a, uint8_t *rec, size_t body, uint8_t *type) {
  uint8_t n[12];
  nonce(a, n);
  size_t clen = body - TLS_TAG_LEN;
  int outl = 0, tmp = 0;
  uint8_t *c = rec + TLS_HDR_LEN;
  if (EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, n) != 1 || EVP_DecryptUpdate(a->ctx, NULL, &tmp, rec, TLS_HDR_LEN) != 1 ||
      EVP_DecryptUpdate(a->ctx, c, &outl, c, (int)clen) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TLS_TAG_LEN, c + clen) != 1 || EVP_DecryptFinal_ex(a->ctx, c + outl, &tmp) != 1)
    return -1;
  a->seq++;
  // The content type is the last non-zero byte; zeros after it are padding (§5.4).
  long i = (long)clen - 1;
  while (i >= 0 && c[i] == 0) i--;
  if (i < 0) return -2;
  *type = c[i];
  return i;
}

static uint32_t u24(const uint8_t *p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }
static uint32_t u16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

// A NewSessionTicket body (§4.6.1), parsed whole: every length inside it must
// land exactly where the message ends.
static bool ticket_well_formed(const uint8_t *b, size_t n) {
  size_t k = 8;  // ticket_lifetime, ticket_age_add
  if (n < k + 1) return false;
  k += 1 + b[k];  // ticket_nonce<0..255>
  if (n < k + 2) return false;
  size_t tl = u16(b + k);
  if (tl == 0) return false;  // ticket<1..2^16-1>
  k += 2 + tl;
  if (n < k + 2) return false;
  size_t el = u16(b + k);
  k += 2;
  if (n - k != el) return false;
  for (size_t e = k; e < n;) {  // extensions: type, length, data
    if (n - e < 4 || n - e - 4 < u16(b + e + 2)) return false;
    e += 4 + u16(b + e + 2);
  }
  return true;
}

// One whole post-handshake message; `last`: it ends its record.
static rx_result hs_message(rx_t *rx, const uint8_t *m, size_t len, bool last, char *reason, size_t reason_len) {
  const uint8_t *body = m + 4;
  size_t blen = len - 4;
  switch (m[0]) {
    case HS_NEW_SESSION_TICKET:
      if (!rx->we_are_client) return BAD("unexpected_message: NewSessionTicket from the client (RFC 8446 §4.6.1)");
      if (!ticket_well_formed(body, blen)) return BAD("decode_error: malformed NewSessionTicket of %zu bytes", blen);
      rx->tickets++;  // nothing to resume on this plane: taken and dropped
      return RX_MORE;
    case HS_KEY_UPDATE:
      if (blen != 1) return BAD("decode_error: KeyUpdate of %zu bytes", blen);
      if (body[0] > 1) return BAD("illegal_parameter: KeyUpdate request %u", body[0]);
      // The next record is under the new key, so nothing may follow in this one (§5.1).
      if (!last) return BAD("unexpected_message: KeyUpdate not at the end of its record (RFC 8446 §5.1)");
      if (!aead_update(&rx->aead)) return BAD("internal_error: the updated key was refused");
      if (body[0] == 1) rx->update_requested = true;
      return RX_MORE;
    case HS_CERTIFICATE_REQUEST:
      return BAD("unexpected_message: CertificateRequest after the handshake (post-handshake authentication is never offered)");
    default:
      return BAD("unexpected_message: handshake message type %u after the handshake", m[0]);
  }
}

// The content of one handshake record: whole messages, or parts of one held
// until it is whole (§5.1 lets a message span records, never other records between).
static rx_result hs_feed(rx_t *rx, const uint8_t *p, size_t n, char *reason, size_t reason_len) {
  size_t off = 0;
  while (off < n) {
    if (rx->hs_len == 0 && n - off >= 4 && n - off >= 4 + (size_t)u24(p + off + 1)) {
      size_t len = 4 + u24(p + off + 1);
      if (len - 4 > rx->max_hs) return BAD("post-handshake message of %zu bytes exceeds %zu", len - 4, rx->max_hs);
      rx_result r = hs_message(rx, p + off, len, off + len == n, reason, reason_len);
      if (r != RX_MORE) return r;
      off += len;
      continue;
    }
    if (!rx->hs) {
      rx->hs_cap = 4 + rx->max_hs;
      rx->hs = malloc(rx->hs_cap);
      if (!rx->hs) return fail(reason, reason_len, "out of memory for a post-handshake message");
    }
    size_t take = rx->hs_len < 4 ? 4 - rx->hs_len : 0;
    if (take > n - off) take = n - off;
    memcpy(rx->hs + rx->hs_len, p + off, take);
    rx->hs_len += take;
    off += take;
    if (rx->hs_len < 4) continue;
    size_t len = 4 + u24(rx->hs + 1);
    if (len - 4 > rx->max_hs) return BAD("post-handshake message of %zu bytes exceeds %zu", len - 4, rx->max_hs);
    take = len - rx->hs_len < n - off ? len - rx->hs_len : n - off;
    memcpy(rx->hs + rx->hs_len, p + off, take);
    rx->hs_len += take;
    off += take;
    if (rx->hs_len < len) continue;
    rx_result r = hs_message(rx, rx->hs, len, off == n, reason, reason_len);
    rx->hs_len = 0;
    free(rx->hs);
    rx->hs = NULL;
    if (r != RX_MORE) return r;
  }
  return RX_MORE;
}

rx_result rx_open(rx_t *rx, uint8_t *buf, size_t n, size_t *used, size_t *plain, char *reason, size_t reason_len) {
  size_t i = 0, p = 0;
  rx_result res = RX_MORE;
  while (n - i >= TLS_HDR_LEN) {
    uint8_t *rec = buf + i;
    size_t body = u16(rec + 3);
    // Judged by the header alone, before the rest of the record arrives.
    if (rec[0] != CT_APPLICATION_DATA || rec[1] != 3 || rec[2] != 3) {
      res = BAD("unexpected_message: not a protected TLS 1.3 record (type %u, version %u.%u)", rec[0], rec[1], rec[2]);
      break;
    }
    if (body > TLS_MAX_CIPHER) {
      res = BAD("record_overflow: %zu bytes of ciphertext exceed %d (RFC 8446 §5.2)", body, TLS_MAX_CIPHER);
      break;
    }
    if (body > TLS_MAX_INNER + TLS_TAG_LEN) {
      res = BAD("record_overflow: an inner plaintext of %zu bytes exceeds %d (RFC 8446 §5.4)", body - TLS_TAG_LEN, TLS_MAX_INNER);
      break;
    }
    if (body < TLS_TAG_LEN + 1) {
      res = BAD("decode_error: a record of %zu bytes cannot hold a tag and a content type", body);
      break;
    }
    if (n - i - TLS_HDR_LEN < body) break;  // the rest of it is still on its way
    if (rx->aead.seq == UINT64_MAX) {
      res = BAD("record sequence number would wrap (RFC 8446 §5.3)");
      break;
    }
    uint8_t type = 0;
    long len = open_record(&rx->aead, rec, body, &type);
    if (len == -1) {
      res = BAD("bad_record_mac: record failed authentication");
      break;
    }
    if (len == -2) {
      res = BAD("unexpected_message: a record with no content type, all padding (RFC 8446 §5.4)");
      break;
    }
    i += TLS_HDR_LEN + body;
    const uint8_t *content = rec + TLS_HDR_LEN;
    if (type != CT_HANDSHAKE && rx->hs_len) {
      res = BAD("unexpected_message: a record of type %u inside a split handshake message (RFC 8446 §5.1)", type);
      break;
    }
    if (type == CT_APPLICATION_DATA) {
      // Gathered at the front: p never passes the start of this record's content.
      memmove(buf + p, content, (size_t)len);
      p += (size_t)len;
      continue;
    }
    if (type == CT_ALERT) {
      if (len != 2) {
        res = BAD("decode_error: an alert of %ld bytes", len);
        break;
      }
      if (content[1] == ALERT_CLOSE_NOTIFY) {
        res = RX_CLOSED;
        break;
      }
      if (content[1] == ALERT_USER_CANCELED) continue;  // a close_notify follows (§6.1)
      res = fail(reason, reason_len, "peer socket error: TLS alert %u from the peer", content[1]);
      break;
    }
    if (type == CT_HANDSHAKE) {
      if (len == 0) {
        res = BAD("unexpected_message: an empty handshake record (RFC 8446 §5.1)");
        break;
      }
      res = hs_feed(rx, content, (size_t)len, reason, reason_len);
      if (res != RX_MORE) break;
      continue;
    }
    res = BAD("unexpected_message: record content type %u after the handshake", type);
    break;
  }
  *used = i;
  *plain = p;
  return res;
}

void rx_free(rx_t *rx) {
  aead_free(&rx->aead);
  free(rx->hs);
  rx->hs = NULL;
  rx->hs_len = 0;
}
