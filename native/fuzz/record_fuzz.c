// libFuzzer target over what a peer gateway controls after the hand-over:
// the TLS 1.3 record layer (record.c) and the frame scanner (frames.c), the
// same code the relay thread runs. Random bytes alone would almost never get
// past the AEAD, so the input is a small program: it seals records of its
// choosing (any content type, content, padding, KeyUpdates the sealer follows)
// mixed with raw bytes, splits the stream at points of its choosing, and feeds
// it to rx_open as the relay does (carry what is left, read more). Checked on
// every step: the bounds rx_open promises (what it consumed, where the
// plaintext lands, less than one record left over), and that the plaintext
// delivered is exactly the application data sealed so far, until the first
// raw byte makes the stream the fuzzer's own. Built with ASan and UBSan.

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../frames.h"
#include "../record.h"
#include "ref_scan.h"

#define MAX_STREAM (1 << 20)

static const char *const CIPHERS[3] = {"aes-256-gcm", "aes-128-gcm", "chacha20-poly1305"};
static const char *const HASHES[3] = {"sha384", "sha256", "sha256"};

// One run's buffers, static: a run allocates nothing of its own but what record.c does.
static uint8_t stream[MAX_STREAM], expect[MAX_STREAM], content[TLS_MAX_CIPHER], buf[TLS_MAX_RECORD + MAX_STREAM];

typedef struct {
  const uint8_t *p;
  size_t n;
} input_t;

// Seals any inner plaintext (content, type, padding) of up to 2^14 + 255
// bytes, past what record_seal allows: how a hostile peer makes a record that
// authenticates and still breaks §5.4.
static size_t seal_inner(aead_t *a, const uint8_t *inner, size_t len, uint8_t *out) {
  size_t body = len + TLS_TAG_LEN;
  out[0] = CT_APPLICATION_DATA;
  out[1] = 3;
  out[2] = 3;
  out[3] = (uint8_t)(body >> 8);
  out[4] = (uint8_t)body;
  uint8_t n[12];
  memcpy(n, a->iv, 12);
  for (int i = 0; i < 8; i++) n[11 - i] ^= (uint8_t)(a->seq >> (8 * i));
  int outl = 0, tmp = 0;
  CHECK(EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, n) == 1 && EVP_EncryptUpdate(a->ctx, NULL, &tmp, out, TLS_HDR_LEN) == 1 &&
            EVP_EncryptUpdate(a->ctx, out + TLS_HDR_LEN, &outl, inner, (int)len) == 1 &&
            EVP_EncryptFinal_ex(a->ctx, out + TLS_HDR_LEN + outl, &tmp) == 1 &&
            EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TLS_TAG_LEN, out + TLS_HDR_LEN + len) == 1,
        "fuzz seal_inner");
  a->seq++;
  return TLS_HDR_LEN + body;
}

static uint8_t take8(input_t *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}

static uint16_t take16(input_t *in) { return (uint16_t)(take8(in) << 8 | take8(in)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input_t in = {data, size};
  uint8_t mode = take8(&in);
  int suite = mode % 3;
  uint8_t secret[48];
  memset(secret, 0x5a, sizeof secret);
  size_t slen = suite == 0 ? 48 : 32;
  aead_t sealer;
  rx_t rx;
  memset(&rx, 0, sizeof rx);
  CHECK(aead_init(&sealer, CIPHERS[suite], HASHES[suite], secret, slen, 0, true), "fuzz sealer");
  CHECK(aead_init(&rx.aead, CIPHERS[suite], HASHES[suite], secret, slen, 0, false), "fuzz opener");
  rx.we_are_client = mode & 4;
  rx.max_hs = (mode & 8) ? 64 : 16384;

  // Build the stream and what it should deliver.
  size_t sl = 0, el = 0;
  bool raw = false;  // once raw bytes are in, only the bounds are checked
  while (in.n && sl + TLS_MAX_RECORD + 300 < MAX_STREAM) {
    uint8_t op = take8(&in);
    size_t len = op & 0x40 ? take16(&in) % (TLS_MAX_INNER + 40) : take8(&in);
    // Every byte an op takes besides its data is taken before the data's length is cut to what is left.
    size_t pad = ((op & 7) <= 2 || (op & 7) == 6) && (op & 0x80) ? take8(&in) : 0;
    uint8_t type = (op & 7) == 5 ? take8(&in) : 0;
    if (len > in.n) len = in.n;
    switch (op & 7) {
      case 0:
      case 1:
      case 2: {  // application data, maybe padded
        if (len > TLS_MAX_PLAIN) len = TLS_MAX_PLAIN;
        if (len + pad > TLS_MAX_PLAIN) pad = TLS_MAX_PLAIN - len;
        memcpy(content, in.p, len);
        memset(content + len, 0, pad);
        in.p += len, in.n -= len;
        if (pad) {
          // Padding: content, its type, pad - 1 zeros, sealed with "type" 0 (the last zero): the
          // last non-zero byte of the inner plaintext is then the real type (§5.4).
          content[len] = CT_APPLICATION_DATA;
          memset(content + len + 1, 0, pad - 1);
          sl += record_seal(&sealer, 0, content, len + pad, stream + sl);
        } else {
          sl += record_seal(&sealer, CT_APPLICATION_DATA, content, len, stream + sl);
        }
        if (!raw) memcpy(expect + el, content, len), el += len;
        break;
      }
      case 3: {  // a handshake record of the fuzzer's bytes; a whole KeyUpdate at its end is followed
        if (len > TLS_MAX_PLAIN) len = TLS_MAX_PLAIN;
        memcpy(content, in.p, len);
        in.p += len, in.n -= len;
        sl += record_seal(&sealer, CT_HANDSHAKE, content, len, stream + sl);
        if (len >= 5 && content[len - 5] == 24 && content[len - 4] == 0 && content[len - 3] == 0 && content[len - 2] == 1 &&
            content[len - 1] <= 1)
          aead_update(&sealer);
        break;
      }
      case 4: {  // a KeyUpdate record, well formed
        uint8_t ku[TLS_KEY_UPDATE_LEN];
        key_update_message(ku, op & 0x80);
        sl += record_seal(&sealer, CT_HANDSHAKE, ku, sizeof ku, stream + sl);
        aead_update(&sealer);
        break;
      }
      case 5: {  // a record of any content type
        if (len > TLS_MAX_PLAIN) len = TLS_MAX_PLAIN;
        memcpy(content, in.p, len);
        in.p += len, in.n -= len;
        sl += record_seal(&sealer, type, content, len, stream + sl);
        if (type != CT_APPLICATION_DATA) raw = true;  // what follows it is the fuzzer's to judge
        else if (!raw) memcpy(expect + el, content, len), el += len;
        break;
      }
      case 6: {  // an inner plaintext sealed as it comes: no type, all padding, or past 2^14 + 1 bytes
        size_t inner = len + (op & 0x80 ? 256 + pad : 0);
        if (inner > TLS_MAX_CIPHER - TLS_TAG_LEN) inner = TLS_MAX_CIPHER - TLS_TAG_LEN;
        memset(content, 0, inner);
        memcpy(content, in.p, len < inner ? len : inner);
        in.p += len, in.n -= len;
        sl += seal_inner(&sealer, content, inner, stream + sl);
        raw = true;
        break;
      }
      default:  // raw bytes, unsealed: headers, lengths, garbage
        memcpy(stream + sl, in.p, len);
        sl += len;
        in.p += len, in.n -= len;
        raw = true;
    }
  }

  // Feed it as the relay does: carried bytes first, then a read of a fuzzer-chosen size.
  size_t carry = 0, off = 0, got = 0;
  frame_scan_t fs = {.max_frame = (mode & 16) ? 100 : 1u << 30};
  ref_scan_t ref = {0};
  uint64_t frames = 0, ticks = 0;
  bool frames_ok = true;
  uint32_t step = (uint32_t)(mode >> 5) * 997 + 1;
  rx_result r = RX_MORE;
  char reason[200];
  while (off < sl && r == RX_MORE) {
    size_t n = step % 20011 + 1;
    step = step * 1103515245u + 12345u;
    if (n > sl - off) n = sl - off;
    memcpy(buf + carry, stream + off, n);
    off += n;
    size_t total = carry + n, used = 0, plain = 0;
    r = rx_open(&rx, buf, total, &used, &plain, reason, sizeof reason);
    // The promises of rx_open.
    CHECK(used <= total && plain <= used, "rx_open consumed more than it had");
    if (r == RX_MORE) CHECK(total - used < TLS_MAX_RECORD, "more than one record left over");
    if (r == RX_FAIL) CHECK(reason[0] != 0, "a failure without a reason");
    if (!raw) {
      CHECK(got + plain <= el && memcmp(buf, expect + got, plain) == 0, "plaintext differs from what was sealed");
    }
    got += plain;
    if (frames_ok) {
      frames_ok = frames_scan(&fs, buf, plain, &frames, &ticks, reason, sizeof reason);
      ref_scan(&ref, buf, plain, fs.max_frame);
      CHECK(frames_ok == !ref.over, "frame limit judged differently");
      if (frames_ok) CHECK(frames == ref.frames && ticks == ref.ticks, "frames or ticks counted differently");
    }
    memmove(buf, buf + used, total - used);
    carry = total - used;
  }
  if (!raw && r == RX_MORE && carry == 0) CHECK(got == el, "application data lost");
  aead_free(&sealer);
  rx_free(&rx);
  return 0;
}
