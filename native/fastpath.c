// The native data plane: relays established distribution links on one thread
// of their own, outside Node's event loop. node:tls does every handshake and
// every certificate check; once a link is in frame mode, src/fastpath/ hands
// this module the two socket descriptors and the TLS 1.3 traffic keys with
// their record sequence numbers, and from then on it reads a node's plain
// bytes, walks their frames, seals them into standard TLS 1.3 records
// (RFC 8446 §5.2) and writes them to the peer gateway, and the reverse. The
// peer cannot tell it from node:tls: a gateway without this module reads the
// same records.
//
// Why: on the Node path every read wakes the event loop, crosses into V8 and
// goes through TLSWrap's stream plumbing one 16 KiB record at a time. Here a
// read of up to `readBytes` becomes one write of sealed records, in C.
//
// Threading: one relay thread owns every adopted link's sockets and cipher
// state. The JS thread only adopts links, asks one to close, and reads its
// counters (relaxed atomics). A link's memory is freed on the JS thread after
// its close has been reported there, so a counter read never races a free.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>
#include <openssl/evp.h>

#define MAX_PLAIN 16384                 // TLS 1.3 record plaintext limit (2^14)
#define MAX_CIPHER (MAX_PLAIN + 256)    // TLS 1.3 TLSCiphertext limit (2^14 + 256)
#define TAG_LEN 16
#define HDR_LEN 5
#define MAX_LINKS 65536                 // ids are indices into a table this large
#define MAX_READ (1024 * 1024)          // largest readBytes init accepts

#define CHECK(cond, msg)                                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "beamgate fastpath: invariant failed: %s (%s:%d)\n", msg, \
              __FILE__, __LINE__);                                              \
      abort();                                                                  \
    }                                                                           \
  } while (0)

typedef struct {
  EVP_CIPHER_CTX *ctx;
  uint8_t iv[12];
  uint64_t seq;
} aead_t;

// One direction of a link: bytes read from `src`, transformed, written to `dst`.
typedef struct {
  int src, dst;
  // Frame scanner: payload bytes still to skip, and a split 4-byte header.
  uint32_t remaining;
  uint32_t header;
  uint32_t header_bytes;
  _Atomic uint64_t bytes, frames, ticks;
  // Output not yet taken by the kernel (malloc'd only while a write is short).
  uint8_t *pend;
  size_t pend_off, pend_len;
  bool src_done;   // EOF (or close_notify) read from src
  bool dst_shut;   // dst shut down for writing after the EOF was passed on
} dir_t;

typedef struct link {
  uint32_t id;
  int lfd, rfd;
  aead_t tx, rx;
  dir_t out;  // local node -> peer gateway (sealed)
  dir_t in;   // peer gateway -> local node (opened)
  // Ciphertext of a record split across reads (at most one record).
  uint8_t *carry;
  size_t carry_len;
  uint32_t lmask, rmask;  // epoll interest currently registered
  uint64_t max_frame;
  int64_t grace_deadline;  // ms (monotonic) after which a half-closed link is cut; 0: none
  uint32_t grace_ms;
  bool closed;
  bool ending;  // a graceful close was asked for: relay what is pending, then end both ways
  char reason[200];
  struct link *next_cmd;   // command queue (adopt)
  struct link *next_close; // close requests, under G.mu
  int close_req;           // 0 none, 1 graceful, 2 abortive; under G.mu
  struct link *grace_prev, *grace_next;  // links waiting on their grace deadline (relay thread only)
} link_t;

// Which socket an epoll event is for: the low bit of the pointer.
#define TAG_LOCAL 0
#define TAG_REMOTE 1

static struct {
  bool started;
  int epfd, evfd;
  pthread_t thread;
  pthread_mutex_t mu;
  link_t *adopt_q;            // adopted, not yet registered by the thread
  link_t *close_q;            // links the JS thread asked to close (each at most once in it)
  link_t *table[MAX_LINKS];   // id -> link, owned by the JS thread's view
  uint32_t next_id;
  size_t read_bytes;
  uint8_t *plain, *sealed;    // the relay thread's scratch buffers
  napi_threadsafe_function on_close;
} G;

static link_t *grace_head;  // relay thread only: links with a grace deadline, unordered
// Relay thread only: links closed during the current batch of events. They are
// reported (and so may be freed) only after the batch, which may still hold
// an event for one of them.
static link_t *closed_head;

static void grace_start(link_t *l, int64_t deadline) {
  if (l->grace_deadline) return;
  l->grace_deadline = deadline;
  l->grace_prev = NULL;
  l->grace_next = grace_head;
  if (grace_head) grace_head->grace_prev = l;
  grace_head = l;
}

static void grace_remove(link_t *l) {
  if (!l->grace_deadline) return;
  if (l->grace_prev) l->grace_prev->grace_next = l->grace_next;
  else grace_head = l->grace_next;
  if (l->grace_next) l->grace_next->grace_prev = l->grace_prev;
  l->grace_prev = l->grace_next = NULL;
}

// Wakes the relay thread for a command.
static void wake(void) {
  uint64_t one = 1;
  ssize_t w = write(G.evfd, &one, sizeof one);
  (void)w;  // a full counter still wakes it
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nonce(const aead_t *a, uint8_t out[12]) {
  memcpy(out, a->iv, 12);
  for (int i = 0; i < 8; i++) out[11 - i] ^= (uint8_t)(a->seq >> (8 * i));
}

// Seals `len` bytes of `type` into one record at `out`; returns its length.
static size_t seal(aead_t *a, uint8_t type, const uint8_t *in, size_t len, uint8_t *out) {
  CHECK(len <= MAX_PLAIN, "record plaintext too long");
  size_t body = len + 1 + TAG_LEN;
  out[0] = 23;
  out[1] = 3;
  out[2] = 3;
  out[3] = (uint8_t)(body >> 8);
  out[4] = (uint8_t)body;
  uint8_t n[12];
  nonce(a, n);
  int outl = 0, tmp = 0;
  bool ok = EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, n) == 1 &&
            EVP_EncryptUpdate(a->ctx, NULL, &tmp, out, HDR_LEN) == 1 &&
            EVP_EncryptUpdate(a->ctx, out + HDR_LEN, &outl, in, (int)len) == 1 &&
            EVP_EncryptUpdate(a->ctx, out + HDR_LEN + outl, &tmp, &type, 1) == 1;
  outl += tmp;
  ok = ok && EVP_EncryptFinal_ex(a->ctx, out + HDR_LEN + outl, &tmp) == 1 &&
       EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, out + HDR_LEN + len + 1) == 1;
  CHECK(ok, "AEAD seal failed");
  a->seq++;
  return HDR_LEN + body;
}

// Opens the record at `rec` (header included) in place. Returns the plaintext
// length (content type stripped) and the inner type, or -1 on a bad record.
static long open_record(aead_t *a, uint8_t *rec, size_t body, uint8_t *type) {
  if (body < TAG_LEN + 1) return -1;
  uint8_t n[12];
  nonce(a, n);
  size_t clen = body - TAG_LEN;
  int outl = 0, tmp = 0;
  uint8_t *c = rec + HDR_LEN;
  if (EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, n) != 1 ||
      EVP_DecryptUpdate(a->ctx, NULL, &tmp, rec, HDR_LEN) != 1 ||
      EVP_DecryptUpdate(a->ctx, c, &outl, c, (int)clen) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, c + clen) != 1 ||
      EVP_DecryptFinal_ex(a->ctx, c + outl, &tmp) != 1)
    return -1;
  a->seq++;
  // Strip the zero padding; the last non-zero byte is the content type.
  long i = (long)clen - 1;
  while (i >= 0 && c[i] == 0) i--;
  if (i < 0) return -1;
  *type = c[i];
  return i;
}

static void set_reason(link_t *l, const char *fmt, const char *detail) {
  if (l->reason[0]) return;  // the first cause wins
  snprintf(l->reason, sizeof l->reason, fmt, detail);
}

// Walks plaintext for frame boundaries; returns false (reason set) on a frame over the limit.
static bool scan(link_t *l, dir_t *d, const uint8_t *p, size_t n) {
  size_t i = 0;
  uint64_t frames = 0, ticks = 0;
  while (i < n) {
    if (d->remaining > 0) {
      size_t take = d->remaining < n - i ? d->remaining : n - i;
      d->remaining -= (uint32_t)take;
      i += take;
      continue;
    }
    while (d->header_bytes < 4 && i < n) {
      d->header = (d->header << 8) | p[i++];
      d->header_bytes++;
    }
    if (d->header_bytes < 4) break;
    uint32_t len = d->header;
    d->header = 0;
    d->header_bytes = 0;
    if (len == 0) {
      ticks++;
      continue;
    }
    if (len > l->max_frame) {
      char detail[96];
      snprintf(detail, sizeof detail, "frame of %u bytes exceeds %llu", len, (unsigned long long)l->max_frame);
      set_reason(l, "refused:frame_too_large:%s", detail);
      return false;
    }
    frames++;
    d->remaining = len;
  }
  atomic_fetch_add_explicit(&d->frames, frames, memory_order_relaxed);
  atomic_fetch_add_explicit(&d->ticks, ticks, memory_order_relaxed);
  atomic_fetch_add_explicit(&d->bytes, n, memory_order_relaxed);
  return true;
}

// Writes what it can of `buf`; keeps the rest as the direction's pending output.
static bool put(link_t *l, dir_t *d, const uint8_t *buf, size_t len, const char *side) {
  CHECK(d->pend_len == 0, "write while output is pending");
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(d->dst, buf + off, len - off);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    set_reason(l, side, strerror(errno));
    return false;
  }
  if (off < len) {
    d->pend = malloc(len - off);
    CHECK(d->pend != NULL, "out of memory for pending output");
    memcpy(d->pend, buf + off, len - off);
    d->pend_off = 0;
    d->pend_len = len - off;
  }
  return true;
}

static bool flush_pending(link_t *l, dir_t *d, const char *side) {
  while (d->pend_len > 0) {
    ssize_t w = write(d->dst, d->pend + d->pend_off, d->pend_len);
    if (w > 0) {
      d->pend_off += (size_t)w;
      d->pend_len -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    set_reason(l, side, strerror(errno));
    return false;
  }
  free(d->pend);
  d->pend = NULL;
  d->pend_off = 0;
  return true;
}

// Seals plaintext from the local node and writes it to the peer gateway.
static bool send_plain(link_t *l, const uint8_t *p, size_t n) {
  if (!scan(l, &l->out, p, n)) return false;
  size_t o = 0;
  for (size_t i = 0; i < n; i += MAX_PLAIN) {
    size_t take = n - i < MAX_PLAIN ? n - i : MAX_PLAIN;
    o += seal(&l->tx, 23, p + i, take, G.sealed + o);
  }
  return put(l, &l->out, G.sealed, o, "peer socket error: %s");
}

static void send_close_notify(link_t *l) {
  static const uint8_t alert[2] = {1, 0};  // warning, close_notify
  uint8_t rec[HDR_LEN + 2 + 1 + TAG_LEN];
  size_t n = seal(&l->tx, 21, alert, 2, rec);
  // Best effort: a full socket buffer here means the peer stopped reading anyway.
  ssize_t w;
  do w = write(l->rfd, rec, n);
  while (w < 0 && errno == EINTR);
}

static void finish_out(link_t *l) {  // the local node's stream has ended
  if (l->out.dst_shut) return;
  send_close_notify(l);
  shutdown(l->rfd, SHUT_WR);
  l->out.dst_shut = true;
}

static void finish_in(link_t *l) {  // the peer's stream has ended
  if (l->in.dst_shut) return;
  shutdown(l->lfd, SHUT_WR);
  l->in.dst_shut = true;
}

// Opens every whole record in `buf` and writes the plaintext to the local node.
// Returns false on a bad record or a failed write; sets in.src_done on close_notify.
static bool recv_cipher(link_t *l, uint8_t *buf, size_t n, size_t *used) {
  size_t i = 0, plain = 0;
  bool ok = true;
  while (i + HDR_LEN <= n) {
    uint8_t *rec = buf + i;
    size_t body = ((size_t)rec[3] << 8) | rec[4];
    if (rec[0] != 23 || rec[1] != 3 || rec[2] != 3 || body > MAX_CIPHER) {
      set_reason(l, "refused:bad_record:%s", "not a TLS 1.3 application_data record");
      ok = false;
      break;
    }
    if (i + HDR_LEN + body > n) break;
    uint8_t type = 0;
    long len = open_record(&l->rx, rec, body, &type);
    if (len < 0) {
      set_reason(l, "refused:bad_record:%s", "record failed authentication");
      ok = false;
      break;
    }
    i += HDR_LEN + body;
    if (type == 23) {
      // Opened in place: gather the plaintext at the front of the buffer.
      memmove(buf + plain, rec + HDR_LEN, (size_t)len);
      plain += (size_t)len;
      continue;
    }
    if (type == 21) {  // alert
      if (len >= 2 && rec[HDR_LEN + 1] == 0) {  // close_notify
        l->in.src_done = true;
        break;
      }
      char detail[48];
      snprintf(detail, sizeof detail, "TLS alert %u from the peer", len >= 2 ? rec[HDR_LEN + 1] : 0);
      set_reason(l, "peer socket error: %s", detail);
      ok = false;
      break;
    }
    if (type == 22 && len >= 1 && rec[HDR_LEN] == 4) continue;  // NewSessionTicket: nothing to resume here
    set_reason(l, "refused:bad_record:%s",
               type == 22 && len >= 1 && rec[HDR_LEN] == 24 ? "KeyUpdate is not supported on the native data plane"
                                                            : "unexpected record content type");
    ok = false;
    break;
  }
  *used = i;
  if (plain > 0) {
    if (!scan(l, &l->in, buf, plain)) return false;
    if (!put(l, &l->in, buf, plain, "local socket error: %s")) return false;
  }
  return ok;
}

static void update_interest(link_t *l) {
  if (l->closed) return;
  uint32_t lm = 0, rm = 0;
  if (!l->out.src_done && l->out.pend_len == 0) lm |= EPOLLIN;
  if (l->in.pend_len > 0) lm |= EPOLLOUT;
  if (!l->in.src_done && l->in.pend_len == 0) rm |= EPOLLIN;
  if (l->out.pend_len > 0) rm |= EPOLLOUT;
  if (lm != l->lmask) {
    struct epoll_event ev = {.events = lm, .data.ptr = (void *)((uintptr_t)l | TAG_LOCAL)};
    CHECK(epoll_ctl(G.epfd, EPOLL_CTL_MOD, l->lfd, &ev) == 0, "epoll_ctl MOD local");
    l->lmask = lm;
  }
  if (rm != l->rmask) {
    struct epoll_event ev = {.events = rm, .data.ptr = (void *)((uintptr_t)l | TAG_REMOTE)};
    CHECK(epoll_ctl(G.epfd, EPOLL_CTL_MOD, l->rfd, &ev) == 0, "epoll_ctl MOD remote");
    l->rmask = rm;
  }
}

static void close_link(link_t *l) {
  if (l->closed) return;
  l->closed = true;
  // Off the grace list before the JS thread may free it.
  grace_remove(l);
  epoll_ctl(G.epfd, EPOLL_CTL_DEL, l->lfd, NULL);
  epoll_ctl(G.epfd, EPOLL_CTL_DEL, l->rfd, NULL);
  close(l->lfd);
  close(l->rfd);
  if (!l->reason[0]) snprintf(l->reason, sizeof l->reason, "closed");
  l->next_cmd = closed_head;
  closed_head = l;
}

static void report_closed(void) {
  while (closed_head) {
    link_t *l = closed_head;
    closed_head = l->next_cmd;
    napi_call_threadsafe_function(G.on_close, l, napi_tsfn_blocking);
  }
}

// A direction that has ended (and flushed) passes its end on; the link is
// done once both have ended both ways. After the first end the rest has
// grace_ms to follow, as on the Node path.
static void check_done(link_t *l) {
  if (l->closed) return;
  if ((l->out.src_done || l->ending) && l->out.pend_len == 0) finish_out(l);
  if ((l->in.src_done || l->ending) && l->in.pend_len == 0) finish_in(l);
  if (l->out.dst_shut && l->in.dst_shut && l->out.src_done && l->in.src_done) return close_link(l);
  if (l->out.dst_shut || l->in.dst_shut) grace_start(l, now_ms() + l->grace_ms);
}

// Reads and drops what arrives after this direction's output was shut down
// (a graceful close), until the EOF that ends it.
static void discard(link_t *l, dir_t *d, int fd, const char *side) {
  ssize_t n;
  do n = read(fd, G.plain, G.read_bytes);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n < 0) {
    set_reason(l, side, strerror(errno));
    return close_link(l);
  }
  if (n == 0) d->src_done = true;
}

static void on_local_readable(link_t *l) {
  if (l->out.src_done || l->out.pend_len > 0) return;
  if (l->out.dst_shut || l->ending) return discard(l, &l->out, l->lfd, "local socket error: %s");
  ssize_t n;
  do n = read(l->lfd, G.plain, G.read_bytes);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n < 0) {
    set_reason(l, "local socket error: %s", strerror(errno));
    return close_link(l);
  }
  if (n == 0) {
    set_reason(l, "%s", "local node closed");
    l->out.src_done = true;
    return;
  }
  if (!send_plain(l, G.plain, (size_t)n)) close_link(l);
}

static void on_remote_readable(link_t *l) {
  if (l->in.src_done || l->in.pend_len > 0) return;
  if (l->in.dst_shut || l->ending) return discard(l, &l->in, l->rfd, "peer socket error: %s");
  // Ciphertext carried over comes first: a record split by the last read, or
  // (once, after the hand-over) whole records Node had read but not opened.
  size_t have = l->carry_len;
  if (have) memcpy(G.plain, l->carry, have);
  size_t room = G.read_bytes + HDR_LEN + MAX_CIPHER - have;
  size_t want = room < G.read_bytes ? room : G.read_bytes;
  ssize_t n = 0;
  bool eof = false;
  if (want > 0) {
    do n = read(l->rfd, G.plain + have, want);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!have) return;
      n = 0;  // nothing new: open what was carried
    } else if (n < 0) {
      set_reason(l, "peer socket error: %s", strerror(errno));
      return close_link(l);
    } else if (n == 0) {
      eof = true;
    }
  }
  size_t total = have + (size_t)n, used = 0;
  if (total && !recv_cipher(l, G.plain, total, &used)) return close_link(l);
  if (l->in.src_done) used = total;  // close_notify: nothing after it counts
  size_t rest = total - used;
  if (eof && !l->in.src_done) {
    if (rest) {
      set_reason(l, "peer socket error: %s", "connection closed in the middle of a TLS record");
      return close_link(l);
    }
    l->in.src_done = true;
  }
  if (l->in.src_done) set_reason(l, "%s", "peer closed");
  if (rest) {
    if (!l->carry) {
      l->carry = malloc(HDR_LEN + MAX_CIPHER + G.read_bytes);
      CHECK(l->carry != NULL, "out of memory for a split record");
    }
    // The plaintext gathered at the front never reaches past `used`.
    memmove(l->carry, G.plain + used, rest);
  } else if (l->carry) {
    free(l->carry);
    l->carry = NULL;
  }
  l->carry_len = rest;
}

static void handle_event(link_t *l, int tag, uint32_t ev) {
  if (l->closed) return;
  if (ev & EPOLLERR) {
    // Reported whatever the interest: take the error now, or the wait would spin on it.
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(tag == TAG_LOCAL ? l->lfd : l->rfd, SOL_SOCKET, SO_ERROR, &err, &len);
    set_reason(l, tag == TAG_LOCAL ? "local socket error: %s" : "peer socket error: %s", strerror(err ? err : ECONNRESET));
    return close_link(l);
  }
  if (tag == TAG_LOCAL) {
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
      if (l->in.pend_len && !flush_pending(l, &l->in, "local socket error: %s")) return close_link(l);
      // Records carried over wait for no new byte from the peer.
      if (l->in.pend_len == 0 && l->carry_len) on_remote_readable(l);
    }
    if (!l->closed && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_local_readable(l);
  } else {
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
      if (l->out.pend_len && !flush_pending(l, &l->out, "peer socket error: %s")) return close_link(l);
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_remote_readable(l);
  }
  if (l->closed) return;
  check_done(l);
  update_interest(l);
}

static void register_link(link_t *l) {
  struct epoll_event ev = {.events = 0, .data.ptr = (void *)((uintptr_t)l | TAG_LOCAL)};
  CHECK(epoll_ctl(G.epfd, EPOLL_CTL_ADD, l->lfd, &ev) == 0, "epoll_ctl ADD local");
  ev.data.ptr = (void *)((uintptr_t)l | TAG_REMOTE);
  CHECK(epoll_ctl(G.epfd, EPOLL_CTL_ADD, l->rfd, &ev) == 0, "epoll_ctl ADD remote");
  l->lmask = l->rmask = 0;
  // Ciphertext handed over with the link (read by Node, not opened): opened
  // now, unless plaintext handed over is still waiting for the node.
  if (l->carry_len && l->in.pend_len == 0) on_remote_readable(l);
  if (l->closed) return;
  check_done(l);
  update_interest(l);
}

static void drain_commands(void) {
  pthread_mutex_lock(&G.mu);
  link_t *q = G.adopt_q;
  G.adopt_q = NULL;
  pthread_mutex_unlock(&G.mu);
  // The queue is newest first; register in adoption order.
  link_t *rev = NULL;
  while (q) {
    link_t *next = q->next_cmd;
    q->next_cmd = rev;
    rev = q;
    q = next;
  }
  for (link_t *l = rev; l;) {
    link_t *next = l->next_cmd;
    register_link(l);
    l = next;
  }
  // Close requests. Only this thread closes registered links, so one that is
  // open when taken off the queue stays allocated until this thread closes it.
  for (;;) {
    pthread_mutex_lock(&G.mu);
    link_t *l = G.close_q;
    int kind = 0;
    bool live = false;
    if (l) {
      G.close_q = l->next_close;
      kind = l->close_req;
      l->close_req = 0;
      // Closed already: it may be freed as soon as the lock is released.
      live = !l->closed;
    }
    pthread_mutex_unlock(&G.mu);
    if (!l) break;
    if (!live) continue;
    if (kind == 2) {
      close_link(l);
      continue;
    }
    // Graceful: end both streams as Node's end() does (close_notify and FIN to
    // the peer, FIN to the node), then wait for both ends to answer with theirs.
    l->ending = true;
    grace_start(l, now_ms() + l->grace_ms);
    check_done(l);
    update_interest(l);
  }
}

static void *relay_main(void *arg) {
  (void)arg;
  struct epoll_event evs[256];
  for (;;) {
    // Sleep until an event, or until the earliest grace deadline of a half-closed link.
    int timeout = -1;
    if (grace_head) {
      int64_t now = now_ms(), first = INT64_MAX;
      for (link_t *l = grace_head; l; l = l->grace_next)
        if (l->grace_deadline < first) first = l->grace_deadline;
      timeout = first <= now ? 0 : (int)(first - now);
    }
    int n = epoll_wait(G.epfd, evs, 256, timeout);
    if (n < 0 && errno != EINTR) CHECK(0, "epoll_wait failed");
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == NULL) {
        uint64_t v;
        ssize_t r = read(G.evfd, &v, sizeof v);
        (void)r;
        drain_commands();
        continue;
      }
      link_t *l = (link_t *)((uintptr_t)p & ~(uintptr_t)1);
      handle_event(l, (int)((uintptr_t)p & 1), evs[i].events);
    }
    if (grace_head) {
      int64_t now = now_ms();
      for (link_t *l = grace_head; l;) {
        link_t *next = l->grace_next;  // close_link takes l off the list
        if (now >= l->grace_deadline) {
          set_reason(l, "%s", "the other side did not close within the grace period");
          close_link(l);
        }
        l = next;
      }
    }
    report_closed();
  }
  return NULL;
}

// ---- N-API ---------------------------------------------------------------

#define NAPI_OK(call)                                            \
  do {                                                           \
    if ((call) != napi_ok) {                                     \
      napi_throw_error(env, NULL, "fastpath: N-API call failed"); \
      return NULL;                                               \
    }                                                            \
  } while (0)

static void free_link(link_t *l) {
  EVP_CIPHER_CTX_free(l->tx.ctx);
  EVP_CIPHER_CTX_free(l->rx.ctx);
  free(l->out.pend);
  free(l->in.pend);
  free(l->carry);
  free(l);
}

// On the JS thread: reports a closed link, then frees it.
static void call_js_close(napi_env env, napi_value cb, void *ctx, void *data) {
  (void)ctx;
  link_t *l = data;
  if (env != NULL) {
    napi_value argv[8], undef;
    napi_create_uint32(env, l->id, &argv[0]);
    napi_create_string_utf8(env, l->reason, NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_double(env, (double)atomic_load(&l->out.bytes), &argv[2]);
    napi_create_double(env, (double)atomic_load(&l->in.bytes), &argv[3]);
    napi_create_double(env, (double)atomic_load(&l->out.frames), &argv[4]);
    napi_create_double(env, (double)atomic_load(&l->in.frames), &argv[5]);
    napi_create_double(env, (double)atomic_load(&l->out.ticks), &argv[6]);
    napi_create_double(env, (double)atomic_load(&l->in.ticks), &argv[7]);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 8, argv, NULL);
  }
  pthread_mutex_lock(&G.mu);
  G.table[l->id] = NULL;
  // A close asked for after the link had closed by itself is still queued: take it off.
  if (l->close_req) {
    for (link_t **pp = &G.close_q; *pp; pp = &(*pp)->next_close) {
      if (*pp == l) {
        *pp = l->next_close;
        break;
      }
    }
  }
  pthread_mutex_unlock(&G.mu);
  free_link(l);
}

// init(onClose, readBytes): starts the relay thread once.
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (G.started) {
    napi_throw_error(env, NULL, "fastpath: already started");
    return NULL;
  }
  uint32_t rb = 0;
  NAPI_OK(napi_get_value_uint32(env, argv[1], &rb));
  if (rb < MAX_CIPHER || rb > MAX_READ) {
    napi_throw_range_error(env, NULL, "fastpath: readBytes out of range");
    return NULL;
  }
  G.read_bytes = rb;
  // Room for a carried record in front of a full read, and for the sealing overhead.
  G.plain = malloc(rb + HDR_LEN + MAX_CIPHER);
  G.sealed = malloc(rb + (rb / MAX_PLAIN + 1) * (HDR_LEN + 1 + TAG_LEN));
  CHECK(G.plain && G.sealed, "out of memory for scratch buffers");
  napi_value name;
  NAPI_OK(napi_create_string_utf8(env, "beamgate-fastpath-close", NAPI_AUTO_LENGTH, &name));
  NAPI_OK(napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js_close, &G.on_close));
  // The relay thread must never keep the process alive on its own.
  NAPI_OK(napi_unref_threadsafe_function(env, G.on_close));
  pthread_mutex_init(&G.mu, NULL);
  G.epfd = epoll_create1(EPOLL_CLOEXEC);
  G.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  CHECK(G.epfd >= 0 && G.evfd >= 0, "epoll or eventfd");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  CHECK(epoll_ctl(G.epfd, EPOLL_CTL_ADD, G.evfd, &ev) == 0, "epoll_ctl ADD eventfd");
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  CHECK(pthread_create(&G.thread, &attr, relay_main, NULL) == 0, "pthread_create");
  pthread_detach(G.thread);
  G.started = true;
  return NULL;
}

static const EVP_CIPHER *cipher_of(const char *name, size_t keylen) {
  if (strcmp(name, "aes-128-gcm") == 0 && keylen == 16) return EVP_aes_128_gcm();
  if (strcmp(name, "aes-256-gcm") == 0 && keylen == 32) return EVP_aes_256_gcm();
  if (strcmp(name, "chacha20-poly1305") == 0 && keylen == 32) return EVP_chacha20_poly1305();
  return NULL;
}

static bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return false;
  return napi_get_named_property(env, obj, key, out) == napi_ok;
}

static bool get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out) {
  napi_value v;
  return get_prop(env, obj, key, &v) && napi_get_value_uint32(env, v, out) == napi_ok;
}

static bool get_i64(napi_env env, napi_value obj, const char *key, int64_t *out) {
  napi_value v;
  return get_prop(env, obj, key, &v) && napi_get_value_int64(env, v, out) == napi_ok;
}

static bool get_buf(napi_env env, napi_value obj, const char *key, void **data, size_t *len) {
  napi_value v;
  return get_prop(env, obj, key, &v) && napi_get_buffer_info(env, v, data, len) == napi_ok;
}

static bool setup_aead(aead_t *a, const EVP_CIPHER *c, const uint8_t *key, const uint8_t *iv, int64_t seq, bool enc) {
  a->ctx = EVP_CIPHER_CTX_new();
  if (!a->ctx) return false;
  memcpy(a->iv, iv, 12);
  a->seq = (uint64_t)seq;
  int ok = enc ? EVP_EncryptInit_ex(a->ctx, c, NULL, NULL, NULL) : EVP_DecryptInit_ex(a->ctx, c, NULL, NULL, NULL);
  ok = ok && EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1;
  ok = ok && (enc ? EVP_EncryptInit_ex(a->ctx, NULL, NULL, key, NULL) : EVP_DecryptInit_ex(a->ctx, NULL, NULL, key, NULL)) == 1;
  return ok;
}

static bool get_scan(napi_env env, napi_value obj, const char *key, dir_t *d) {
  napi_value s;
  uint32_t remaining, header, header_bytes;
  int64_t frames, ticks;
  if (!get_prop(env, obj, key, &s) || !get_u32(env, s, "remaining", &remaining) || !get_u32(env, s, "header", &header) ||
      !get_u32(env, s, "headerBytes", &header_bytes) || !get_i64(env, s, "frames", &frames) || !get_i64(env, s, "ticks", &ticks) ||
      header_bytes > 3)
    return false;
  d->remaining = remaining;
  d->header = header;
  d->header_bytes = header_bytes;
  atomic_store(&d->frames, (uint64_t)frames);
  atomic_store(&d->ticks, (uint64_t)ticks);
  return true;
}

// adopt({localFd, remoteFd, cipher, txKey, txIv, txSeq, rxKey, rxIv, rxSeq,
//        toRemote, toLocal, fromRemote, outScan, inScan, maxFrameBytes, closeGraceMs}) -> id
// The descriptors are duplicated: the caller closes its own afterwards.
static napi_value js_adopt(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value o;
  NAPI_OK(napi_get_cb_info(env, info, &argc, &o, NULL, NULL));
  if (!G.started) {
    napi_throw_error(env, NULL, "fastpath: not started");
    return NULL;
  }
  uint32_t lfd, rfd, grace, max_frame;
  int64_t txseq, rxseq;
  char cipher[32];
  size_t cl = 0;
  void *txk, *txiv, *rxk, *rxiv, *to_remote, *to_local, *from_remote;
  size_t txkl, txivl, rxkl, rxivl, trl, tll, frl;
  napi_value cv;
  link_t *l = calloc(1, sizeof *l);
  CHECK(l != NULL, "out of memory for a link");
  bool ok = get_u32(env, o, "localFd", &lfd) && get_u32(env, o, "remoteFd", &rfd) && get_prop(env, o, "cipher", &cv) &&
            napi_get_value_string_utf8(env, cv, cipher, sizeof cipher, &cl) == napi_ok && get_buf(env, o, "txKey", &txk, &txkl) &&
            get_buf(env, o, "txIv", &txiv, &txivl) && get_i64(env, o, "txSeq", &txseq) && get_buf(env, o, "rxKey", &rxk, &rxkl) &&
            get_buf(env, o, "rxIv", &rxiv, &rxivl) && get_i64(env, o, "rxSeq", &rxseq) &&
            get_buf(env, o, "toRemote", &to_remote, &trl) && get_buf(env, o, "toLocal", &to_local, &tll) &&
            get_buf(env, o, "fromRemote", &from_remote, &frl) && get_scan(env, o, "outScan", &l->out) &&
            get_scan(env, o, "inScan", &l->in) && get_u32(env, o, "maxFrameBytes", &max_frame) &&
            get_u32(env, o, "closeGraceMs", &grace);
  const EVP_CIPHER *c = ok ? cipher_of(cipher, txkl) : NULL;
  if (!ok || !c || txivl != 12 || rxivl != 12 || rxkl != txkl || txseq < 0 || rxseq < 0 || frl > HDR_LEN + MAX_CIPHER + G.read_bytes) {
    free(l);
    napi_throw_type_error(env, NULL, "fastpath: bad adopt arguments");
    return NULL;
  }
  l->max_frame = max_frame;
  l->grace_ms = grace;
  if (!setup_aead(&l->tx, c, txk, txiv, txseq, true) || !setup_aead(&l->rx, c, rxk, rxiv, rxseq, false)) {
    free_link(l);
    napi_throw_error(env, NULL, "fastpath: cipher set-up failed");
    return NULL;
  }
  l->lfd = fcntl((int)lfd, F_DUPFD_CLOEXEC, 3);
  l->rfd = fcntl((int)rfd, F_DUPFD_CLOEXEC, 3);
  if (l->lfd < 0 || l->rfd < 0) {
    if (l->lfd >= 0) close(l->lfd);
    if (l->rfd >= 0) close(l->rfd);
    free_link(l);
    napi_throw_error(env, NULL, "fastpath: cannot duplicate the sockets");
    return NULL;
  }
  fcntl(l->lfd, F_SETFL, fcntl(l->lfd, F_GETFL) | O_NONBLOCK);
  fcntl(l->rfd, F_SETFL, fcntl(l->rfd, F_GETFL) | O_NONBLOCK);
  l->out.src = l->lfd;
  l->out.dst = l->rfd;
  l->in.src = l->rfd;
  l->in.dst = l->lfd;
  // Plaintext Node had already read: sealed (or written) now, on this thread, so
  // it precedes anything the relay thread reads. Blocking is not an issue: the
  // sockets were drained before the hand-over, and these are small.
  bool handed = true;
  if (trl) {
    for (size_t i = 0; i < trl && handed; i += G.read_bytes) {
      size_t take = trl - i < G.read_bytes ? trl - i : G.read_bytes;
      // The relay thread is not using this link yet, but it may use the scratch buffers: use our own.
      uint8_t *sealed = malloc(take + (take / MAX_PLAIN + 1) * (HDR_LEN + 1 + TAG_LEN));
      CHECK(sealed != NULL, "out of memory");
      handed = scan(l, &l->out, (uint8_t *)to_remote + i, take);
      size_t o = 0;
      for (size_t j = 0; handed && j < take; j += MAX_PLAIN) {
        size_t t = take - j < MAX_PLAIN ? take - j : MAX_PLAIN;
        o += seal(&l->tx, 23, (uint8_t *)to_remote + i + j, t, sealed + o);
      }
      if (handed && l->out.pend_len == 0) handed = put(l, &l->out, sealed, o, "peer socket error: %s");
      else if (handed) {  // already pending: append
        uint8_t *p = realloc(l->out.pend, l->out.pend_off + l->out.pend_len + o);
        CHECK(p != NULL, "out of memory");
        memcpy(p + l->out.pend_off + l->out.pend_len, sealed, o);
        l->out.pend = p;
        l->out.pend_len += o;
      }
      free(sealed);
    }
  }
  if (handed && tll) {
    handed = scan(l, &l->in, to_local, tll);
    if (handed) handed = put(l, &l->in, to_local, tll, "local socket error: %s");
  }
  if (frl) {
    l->carry = malloc(HDR_LEN + MAX_CIPHER + G.read_bytes);
    CHECK(l->carry != NULL, "out of memory");
    memcpy(l->carry, from_remote, frl);
    l->carry_len = frl;
  }
  pthread_mutex_lock(&G.mu);
  uint32_t id = UINT32_MAX;
  for (uint32_t k = 0; k < MAX_LINKS; k++) {
    uint32_t cand = (G.next_id + k) % MAX_LINKS;
    if (!G.table[cand]) {
      id = cand;
      break;
    }
  }
  if (id != UINT32_MAX) {
    G.table[id] = l;
    G.next_id = (id + 1) % MAX_LINKS;  // round robin: an id is not reused at once
  }
  pthread_mutex_unlock(&G.mu);
  if (id == UINT32_MAX) {
    close(l->lfd);
    close(l->rfd);
    free_link(l);
    napi_throw_error(env, NULL, "fastpath: link table full");
    return NULL;
  }
  l->id = id;
  if (!handed) {
    // A hand-over that already failed is reported like any other close.
    l->closed = true;
    close(l->lfd);
    close(l->rfd);
    napi_call_threadsafe_function(G.on_close, l, napi_tsfn_blocking);
  } else {
    pthread_mutex_lock(&G.mu);
    l->next_cmd = G.adopt_q;
    G.adopt_q = l;
    pthread_mutex_unlock(&G.mu);
    wake();
  }
  napi_value res;
  NAPI_OK(napi_create_uint32(env, id, &res));
  return res;
}

// close(id, abortive): asks the relay thread to end a link (its close is reported as usual).
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t id;
  bool abortive;
  NAPI_OK(napi_get_value_uint32(env, argv[0], &id));
  NAPI_OK(napi_get_value_bool(env, argv[1], &abortive));
  // The entry stays until its close has been reported on this thread, so it is either live or closing.
  link_t *l = id < MAX_LINKS ? G.table[id] : NULL;
  bool queued = l != NULL;
  if (l) {
    pthread_mutex_lock(&G.mu);
    if (l->close_req == 0) {
      l->next_close = G.close_q;
      G.close_q = l;
    }
    if ((abortive ? 2 : 1) > l->close_req) l->close_req = abortive ? 2 : 1;
    pthread_mutex_unlock(&G.mu);
    wake();
  }
  napi_value res;
  NAPI_OK(napi_get_boolean(env, queued, &res));
  return res;
}

// stats(id) -> [bytesOut, bytesIn, framesOut, framesIn, ticksOut, ticksIn] or undefined once gone.
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], arr, undef;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t id;
  NAPI_OK(napi_get_value_uint32(env, argv[0], &id));
  NAPI_OK(napi_get_undefined(env, &undef));
  // The table entry is removed and freed on this (JS) thread only, so it is safe to read here.
  link_t *l = id < MAX_LINKS ? G.table[id] : NULL;
  if (!l) return undef;
  uint64_t v[6] = {atomic_load_explicit(&l->out.bytes, memory_order_relaxed), atomic_load_explicit(&l->in.bytes, memory_order_relaxed),
                   atomic_load_explicit(&l->out.frames, memory_order_relaxed), atomic_load_explicit(&l->in.frames, memory_order_relaxed),
                   atomic_load_explicit(&l->out.ticks, memory_order_relaxed), atomic_load_explicit(&l->in.ticks, memory_order_relaxed)};
  NAPI_OK(napi_create_array_with_length(env, 6, &arr));
  for (uint32_t i = 0; i < 6; i++) {
    napi_value x;
    NAPI_OK(napi_create_double(env, (double)v[i], &x));
    NAPI_OK(napi_set_element(env, arr, i, x));
  }
  return arr;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
      {"adopt", NULL, js_adopt, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
