// The TLS 1.3 record layer of the native data plane (RFC 8446 §5), with no
// sockets: sealing records, and opening what a peer sends with every check
// the RFC asks of a receiver after the handshake (record sizes, content
// types, post-handshake messages parsed whole, KeyUpdate in both
// directions). The relay thread (relay.c) and the fuzz target
// (fuzz/record_fuzz.c) share it, so what is fuzzed is what runs.

#ifndef BEAMGATE_RECORD_H
#define BEAMGATE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define TLS_HDR_LEN 5
#define TLS_TAG_LEN 16
#define TLS_MAX_PLAIN 16384                       // content of one record (2^14)
#define TLS_MAX_INNER (TLS_MAX_PLAIN + 1)         // TLSInnerPlaintext: content, type, padding (§5.4)
#define TLS_MAX_CIPHER (TLS_MAX_PLAIN + 256)      // TLSCiphertext.length (§5.2)
#define TLS_MAX_RECORD (TLS_HDR_LEN + TLS_MAX_CIPHER)
#define TLS_SEAL_OVERHEAD (TLS_HDR_LEN + 1 + TLS_TAG_LEN)
#define TLS_KEY_UPDATE_LEN 5                      // handshake header and one byte (§4.6.3)
#define TLS_KEY_UPDATE_RECORD (TLS_KEY_UPDATE_LEN + TLS_SEAL_OVERHEAD)
#define TLS_MAX_SECRET 48                         // SHA-384

#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPLICATION_DATA 23

// One direction's record protection: the traffic secret (for KeyUpdate), the
// key schedule's hash, the AEAD with its key and nonce base, the next record's number.
typedef struct {
  EVP_CIPHER_CTX *ctx;
  const EVP_MD *md;
  bool enc;
  uint8_t secret[TLS_MAX_SECRET];
  size_t secret_len;
  uint8_t iv[12];
  uint64_t seq;
  uint64_t updates;  // KeyUpdates taken in this direction
} aead_t;

// Sets up `a` from a traffic secret (RFC 8446 §7.3). `cipher` is
// aes-128-gcm, aes-256-gcm or chacha20-poly1305, `hash` sha256 or sha384;
// false for any other name or a secret of the wrong length.
bool aead_init(aead_t *a, const char *cipher, const char *hash, const uint8_t *secret, size_t secret_len, uint64_t seq, bool enc);
void aead_free(aead_t *a);
// The next generation of keys (§7.2): the secret, key and nonce base, and the
// record number back to 0. False only if the cipher context refuses the key.
bool aead_update(aead_t *a);

// Seals `len` (at most TLS_MAX_PLAIN) bytes of content type `type` into one
// record at `out`, which has room for len + TLS_SEAL_OVERHEAD; returns its length.
size_t record_seal(aead_t *a, uint8_t type, const uint8_t *in, size_t len, uint8_t *out);
// A KeyUpdate message (§4.6.3) for record_seal.
void key_update_message(uint8_t out[TLS_KEY_UPDATE_LEN], bool update_requested);

// One receiving direction after the hand-over.
typedef struct {
  aead_t aead;
  bool we_are_client;   // only a server sends NewSessionTicket, to its client
  size_t max_hs;        // largest post-handshake message taken
  // A post-handshake message split across records (§5.1), held until whole.
  uint8_t *hs;
  size_t hs_len, hs_cap;
  bool update_requested;  // the peer's KeyUpdate asked for ours: send it before the next record
  uint64_t tickets;
} rx_t;

typedef enum {
  RX_MORE,    // every whole record opened; the rest (part of a record) waits for more bytes
  RX_CLOSED,  // close_notify: the stream has ended, nothing after it counts
  RX_FAIL,    // the connection must end: `reason` says why, as "refused:bad_record:..." or "peer socket error: ..."
} rx_result;

// Opens every whole record in buf[0, n) in place. The application data is
// gathered at the front of `buf` (*plain bytes: never past what was
// consumed); *used is how many bytes of `buf` the records took. Whatever
// follows *used is less than one record.
rx_result rx_open(rx_t *rx, uint8_t *buf, size_t n, size_t *used, size_t *plain, char *reason, size_t reason_len);
void rx_free(rx_t *rx);

#endif
