// The relay thread of the native data plane: see relay.h. It reads a node's
// plain bytes, walks their frames, seals them into TLS 1.3 records and
// writes them to the peer gateway, and the reverse (record.c opens what the
// peer sends). A read of up to `read_bytes` becomes one write. What a
// filtered link does with the bytes headed for its node (its gate, the
// questions and answers, frames of the gateway's own) is gated.c's; link.h
// is what the two files share, and no other.
//
// Ordering between the two threads is designed, not tested: adopts, detaches and
// closes travel in one FIFO, so a link's close or detach is always taken after its
// adopt; a link is freed by the owner only after the relay thread reported it
// closed, and a close request for it still queued then is taken off under the
// same lock the relay thread takes it with.
//
// Every socket is in epoll only while the link wants an event from it: epoll
// reports EPOLLHUP and EPOLLERR whatever the interest, so a socket that has
// ended both ways and stayed registered would wake the thread on every wait.

#define _GNU_SOURCE
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "link.h"
#include "record.h"

#define MAX_LINKS 65536          // ids are indices into a table this large
#define MIN_READ TLS_MAX_RECORD  // a read must hold one whole record
#define MAX_READ (1024 * 1024)

// Room to seal `n` bytes of plaintext: every record may be preceded by a KeyUpdate of ours.
#define SEALED_MAX(n) ((n) + ((n) / TLS_MAX_PLAIN + 1) * (TLS_SEAL_OVERHEAD + TLS_KEY_UPDATE_RECORD))

static struct {
  relay_config_t cfg;
  bool started;
  int epfd, evfd;
  pthread_t thread;
  pthread_mutex_t mu;
  cmd_t *head, *tail;        // the command FIFO, under mu
  link_t *table[MAX_LINKS];  // id -> link; written under mu, read by the owner
  uint32_t next_id;
  uint8_t *plain, *sealed;  // the relay thread's scratch buffers
  size_t plain_cap;
  _Atomic size_t held;  // bytes every link holds in buffers (pending output, carried records, split messages)
} G;

static link_t *grace_head;   // relay thread: links with a grace deadline
static link_t *closed_head;  // relay thread: closed in this round, reported after it

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wake(void) {
  uint64_t one = 1;
  ssize_t w = write(G.evfd, &one, sizeof one);
  (void)w;  // a full counter wakes the thread just the same
}

void set_reason(link_t *l, const char *fmt, ...) {
  if (l->reason[0]) return;  // the first cause wins
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->reason, sizeof l->reason, fmt, ap);
  va_end(ap);
}

static void ended(link_t *l, const char *what) {
  if (!l->first_end) l->first_end = what;
}

static void grace_start(link_t *l) {
  if (l->grace_deadline) return;
  l->grace_deadline = now_ms() + (int64_t)l->grace_ms;
  if (l->grace_deadline == 0) l->grace_deadline = 1;
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
  l->grace_deadline = 0;
}

static size_t holding(const link_t *l) {
  if (l->closed) return 0;  // freed with the link, at once
  return l->out.pend_off + l->out.pend_len + l->in.pend_off + l->in.pend_len + l->carry_cap + (l->rx.hs ? l->rx.hs_cap : 0) +
         (size_t)l->gate_held + l->seed_len + l->inject_len;
}

// Brings G.held up to date with what `l` holds now.
static void account(link_t *l) {
  size_t now = holding(l);
  if (now > l->held) atomic_fetch_add_explicit(&G.held, now - l->held, memory_order_relaxed);
  else if (now < l->held) atomic_fetch_sub_explicit(&G.held, l->held - now, memory_order_relaxed);
  l->held = now;
}

static void close_link(link_t *l) {
  if (l->closed) return;
  l->closed = true;
  grace_remove(l);
  if (l->lmask) epoll_ctl(G.epfd, EPOLL_CTL_DEL, l->lfd, NULL);
  if (l->rmask) epoll_ctl(G.epfd, EPOLL_CTL_DEL, l->rfd, NULL);
  l->lmask = l->rmask = 0;
  close(l->lfd);
  close(l->rfd);
  gate_account(l);  // gives its share back (closed: 0)
  if (!l->reason[0]) {
    if (l->grace_expired) {
      // What was still owed when the grace ran out: output someone did not read, or an end.
      const char *owed = l->out.pend_len                    ? "the peer did not read what was sent"
                         : l->in.pend_len                   ? "the local node did not read what was sent"
                         : !l->out.src_done && !l->in.src_done ? "neither side closed"
                         : !l->out.src_done                 ? "the local node did not close"
                                                            : "the peer did not close";
      snprintf(l->reason, sizeof l->reason, "%s, and %s within the %u ms grace period", l->first_end ? l->first_end : "closing", owed,
               l->grace_ms);
    } else {
      snprintf(l->reason, sizeof l->reason, "%s", l->first_end ? l->first_end : "closed");
    }
  }
  account(l);
  l->next_closed = closed_head;
  closed_head = l;
}

// Writes `len` bytes to d->dst after whatever is pending; keeps what the kernel does not take.
bool out_write(link_t *l, dir_t *d, const uint8_t *buf, size_t len, const char *side) {
  size_t off = 0;
  if (d->pend_len == 0) {
    while (off < len) {
      ssize_t w = write(d->dst, buf + off, len - off);
      if (w > 0) {
        off += (size_t)w;
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      set_reason(l, "%s socket error: %s", side, strerror(errno));
      return false;
    }
    if (off == len) return true;
  }
  size_t keep = len - off;
  uint8_t *p = realloc(d->pend, d->pend_off + d->pend_len + keep);
  if (!p) {
    set_reason(l, "out of memory for %zu bytes of pending output", d->pend_len + keep);
    return false;
  }
  memcpy(p + d->pend_off + d->pend_len, buf + off, keep);
  d->pend = p;
  d->pend_len += keep;
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
    set_reason(l, "%s socket error: %s", side, strerror(errno));
    return false;
  }
  free(d->pend);
  d->pend = NULL;
  d->pend_off = 0;
  return true;
}

// Seals our KeyUpdate under the current key and moves the sender to the next one.
static size_t seal_key_update(link_t *l, bool requested, uint8_t *out) {
  uint8_t msg[TLS_KEY_UPDATE_LEN];
  key_update_message(msg, requested);
  size_t n = record_seal(&l->tx, CT_HANDSHAKE, msg, sizeof msg, out);
  if (!aead_update(&l->tx)) return 0;
  atomic_store_explicit(&l->key_updates_out, l->tx.updates, memory_order_relaxed);
  return n;
}

// Seals plaintext into records at `out` (room: SEALED_MAX(n)), with a
// KeyUpdate of ours whenever a key has sealed rekey_records records. 0: failed.
size_t seal_plain(link_t *l, const uint8_t *p, size_t n, uint8_t *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += TLS_MAX_PLAIN) {
    if (l->tx.seq >= G.cfg.rekey_records) {
      size_t k = seal_key_update(l, false, out + o);
      if (!k) return 0;
      o += k;
    }
    size_t take = n - i < TLS_MAX_PLAIN ? n - i : TLS_MAX_PLAIN;
    o += record_seal(&l->tx, CT_APPLICATION_DATA, p + i, take, out + o);
  }
  return o;
}

bool scan(link_t *l, dir_t *d, const uint8_t *p, size_t n) {
  uint64_t frames = 0, ticks = 0;
  char why[REASON_LEN];
  bool ok = frames_scan(&d->scan, p, n, &frames, &ticks, why, sizeof why);
  atomic_fetch_add_explicit(&d->frames, frames, memory_order_relaxed);
  atomic_fetch_add_explicit(&d->ticks, ticks, memory_order_relaxed);
  atomic_fetch_add_explicit(&d->bytes, n, memory_order_relaxed);
  if (!ok) set_reason(l, "%s", why);
  if (ok && atomic_load_explicit(&l->handshaking, memory_order_relaxed) && l->out.scan.hs.side == HS_DONE && l->in.scan.hs.side == HS_DONE)
    atomic_store_explicit(&l->handshaking, false, memory_order_release);
  return ok;
}

// Moves each direction that has ended towards its close: towards the peer,
// close_notify after everything else, then FIN; towards the node, FIN. The
// link closes once both have ended both ways; after the first end the rest
// has grace_ms.
static void progress(link_t *l) {
  if (l->closed) return;
  if ((l->out.src_done || l->ending) && !l->out.notify_sent && l->out.pend_len == 0) {
    static const uint8_t alert[2] = {1, 0};  // warning, close_notify
    uint8_t rec[2 + TLS_SEAL_OVERHEAD];
    size_t n = record_seal(&l->tx, CT_ALERT, alert, sizeof alert, rec);
    l->out.notify_sent = true;
    if (!out_write(l, &l->out, rec, n, "peer")) return close_link(l);
  }
  if (l->out.notify_sent && l->out.pend_len == 0 && !l->out.dst_shut) {
    shutdown(l->rfd, SHUT_WR);
    l->out.dst_shut = true;
  }
  // A message waiting for the gateway's answer, and what came behind it, go first.
  if ((l->in.src_done || l->ending) && l->in.pend_len == 0 && !l->in.dst_shut && !gate_waits(l)) {
    shutdown(l->lfd, SHUT_WR);
    l->in.dst_shut = true;
  }
  if (l->out.dst_shut && l->in.dst_shut && l->out.src_done && l->in.src_done) return close_link(l);
  if (l->out.src_done || l->in.src_done || l->ending) grace_start(l);
}

static bool set_interest(link_t *l, int fd, uint32_t want, uint32_t *have, uintptr_t tag) {
  if (want == *have) return true;
  if (want == 0) {
    // The link wants nothing of this socket for now: out of epoll, so an ended socket cannot wake us.
    if (epoll_ctl(G.epfd, EPOLL_CTL_DEL, fd, NULL) != 0) {
      set_reason(l, "epoll_ctl DEL: %s", strerror(errno));
      return false;
    }
    *have = 0;
    return true;
  }
  struct epoll_event ev = {.events = want, .data.ptr = (void *)((uintptr_t)l | tag)};
  if (epoll_ctl(G.epfd, *have ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
    set_reason(l, "epoll_ctl %s: %s", *have ? "MOD" : "ADD", strerror(errno));
    return false;
  }
  *have = want;
  return true;
}

#define TAG_LOCAL 0
#define TAG_REMOTE 1

static void update_interest(link_t *l) {
  if (l->closed) return;
  uint32_t lm = 0, rm = 0;
  if (!l->out.src_done && l->out.pend_len == 0) lm |= EPOLLIN;
  if (l->in.pend_len > 0) lm |= EPOLLOUT;
  if (!l->in.src_done && l->in.pend_len == 0 && !gate_waits(l)) rm |= EPOLLIN;
  if (l->out.pend_len > 0) rm |= EPOLLOUT;
  if (!set_interest(l, l->lfd, lm, &l->lmask, TAG_LOCAL) || !set_interest(l, l->rfd, rm, &l->rmask, TAG_REMOTE)) close_link(l);
}

// Reads and drops what arrives after this direction's output was shut (a
// graceful close), until the EOF that ends it.
static void discard(link_t *l, dir_t *d, int fd, const char *side) {
  ssize_t n;
  do n = read(fd, G.plain, G.cfg.read_bytes);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n < 0) {
    set_reason(l, "%s socket error: %s", side, strerror(errno));
    return close_link(l);
  }
  if (n == 0) d->src_done = true;
}

static void on_local_readable(link_t *l) {
  if (l->out.src_done || l->out.pend_len > 0) return;
  if (l->out.notify_sent || l->ending) return discard(l, &l->out, l->lfd, "local");
  ssize_t n;
  do n = read(l->lfd, G.plain, G.cfg.read_bytes);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n < 0) {
    set_reason(l, "local socket error: %s", strerror(errno));
    return close_link(l);
  }
  if (n == 0) {
    ended(l, "local node closed");
    l->out.src_done = true;
    return;
  }
  if (!send_plain(l, G.plain, (size_t)n, G.sealed)) close_link(l);
}

static void on_remote_readable(link_t *l) {
  if (l->in.src_done || l->in.pend_len > 0 || gate_waits(l)) return;
  if (l->in.dst_shut || l->ending) return discard(l, &l->in, l->rfd, "peer");
  // Ciphertext carried over comes first.
  size_t have = l->carry_len;
  if (have) memcpy(G.plain, l->carry, have);
  size_t room = G.plain_cap - have;
  size_t want = room < G.cfg.read_bytes ? room : G.cfg.read_bytes;
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
  size_t total = have + (size_t)n, used = 0, plain = 0;
  rx_result r = RX_MORE;
  if (total) {
    char why[REASON_LEN];
    r = rx_open(&l->rx, G.plain, total, &used, &plain, why, sizeof why);
    atomic_store_explicit(&l->key_updates_in, l->rx.aead.updates, memory_order_relaxed);
    // Records that opened before a bad one still reach the node, as on node:tls.
    if (plain && (!scan(l, &l->in, G.plain, plain) || !deliver_in(l, G.plain, plain))) return close_link(l);
    if (r == RX_FAIL) {
      set_reason(l, "%s", why);
      return close_link(l);
    }
    if (r == RX_CLOSED) {
      used = total;  // nothing after close_notify counts
      ended(l, "peer closed");
      l->in.src_done = true;
    }
    if (l->rx.update_requested) {
      // Ours must precede our next record (§4.6.3); a direction that has ended sends nothing more.
      l->rx.update_requested = false;
      if (!l->out.notify_sent) {
        uint8_t rec[TLS_KEY_UPDATE_RECORD];
        size_t k = seal_key_update(l, false, rec);
        if (!k) set_reason(l, "%s", "the cipher refused an updated key");
        if (!k || !out_write(l, &l->out, rec, k, "peer")) return close_link(l);
      }
    }
  }
  size_t rest = total - used;
  if (eof && !l->in.src_done) {
    if (rest) {
      set_reason(l, "%s", "peer socket error: connection closed in the middle of a TLS record");
      return close_link(l);
    }
    ended(l, "peer closed");
    l->in.src_done = true;
  }
  if (rest) {
    // rx_open opens every whole record and refuses a header announcing more
    // than TLS_MAX_CIPHER, so what is left is part of one record.
    CHECK(rest < TLS_MAX_RECORD, "more than one record carried");
    if (l->carry_cap < rest) {
      free(l->carry);
      l->carry = malloc(TLS_MAX_RECORD);
      l->carry_cap = l->carry ? TLS_MAX_RECORD : 0;
      if (!l->carry) {
        l->carry_len = 0;
        set_reason(l, "%s", "out of memory for a split record");
        return close_link(l);
      }
    }
    memmove(l->carry, G.plain + used, rest);
  } else if (l->carry) {
    free(l->carry);
    l->carry = NULL;
    l->carry_cap = 0;
  }
  l->carry_len = rest;
}

static void detach_link(link_t *l);

static void handle_event(link_t *l, uintptr_t tag, uint32_t ev) {
  if (l->closed) return;
  if (ev & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(tag == TAG_LOCAL ? l->lfd : l->rfd, SOL_SOCKET, SO_ERROR, &err, &len);
    set_reason(l, "%s socket error: %s", tag == TAG_LOCAL ? "local" : "peer", strerror(err ? err : ECONNRESET));
    return close_link(l);
  }
  if (tag == TAG_LOCAL) {
    if (ev & (EPOLLOUT | EPOLLHUP)) {
      if (l->in.pend_len && !flush_pending(l, &l->in, "local")) return close_link(l);
      // Records carried over wait for no new byte from the peer.
      if (l->in.pend_len == 0 && l->carry_len) on_remote_readable(l);
    }
    if (!l->closed && (ev & (EPOLLIN | EPOLLHUP))) on_local_readable(l);
  } else {
    if ((ev & (EPOLLOUT | EPOLLHUP)) && l->out.pend_len && !flush_pending(l, &l->out, "peer")) return close_link(l);
    if (!l->closed && (ev & (EPOLLIN | EPOLLHUP))) on_remote_readable(l);
  }
  progress(l);
  update_interest(l);
  account(l);
  if (l->detach_wanted && !l->closed && !atomic_load_explicit(&l->handshaking, memory_order_relaxed)) detach_link(l);
}

// Lets go of a link relaying both ways: out of epoll, sockets left open, its
// state kept for relay_link_detached. A link that has begun to end (a side
// closed, a close asked for) is not moved: it ends here, within its grace.
static void detach_link(link_t *l) {
  // A filtered link never moves: its judge's state is this process's (the gateway does not ask).
  if (l->gate || l->ending || l->out.src_done || l->in.src_done || l->out.notify_sent) return;
  // Its handshake's state is the relay thread's own (only frames are exported): it goes once that is over.
  if (atomic_load_explicit(&l->handshaking, memory_order_relaxed)) {
    l->detach_wanted = true;
    return;
  }
  l->detach_wanted = false;
  if (l->lmask) epoll_ctl(G.epfd, EPOLL_CTL_DEL, l->lfd, NULL);
  if (l->rmask) epoll_ctl(G.epfd, EPOLL_CTL_DEL, l->rfd, NULL);
  l->lmask = l->rmask = 0;
  l->closed = true;
  l->detached = true;
  snprintf(l->reason, sizeof l->reason, "%s", "detached");
  account(l);
  l->next_closed = closed_head;
  closed_head = l;
}

static void register_link(link_t *l) {
  l->registered = true;
  if (l->seed_len && !deliver_seed(l)) {
    close_link(l);
    return;
  }
  // Ciphertext handed over with the link (read by Node, not opened) is opened
  // now, unless plaintext handed over is still waiting for the node.
  if (l->carry_len && l->in.pend_len == 0) on_remote_readable(l);
  progress(l);
  update_interest(l);
  account(l);
}

// The gateway's answer to the question open on a filtered link (gated.c), and what it unblocks.
static void on_answer(link_t *l, bool pass, uint8_t *inject, size_t inject_len) {
  if (!take_answer(l, pass, inject, inject_len, G.sealed)) return close_link(l);
  // Records handed over with the link wait for no new byte from the peer.
  if (!gate_waits(l) && l->carry_len && l->in.pend_len == 0) on_remote_readable(l);
  progress(l);
  update_interest(l);
  account(l);
}

void enqueue(cmd_t *c) {
  c->next = NULL;
  if (G.tail) G.tail->next = c;
  else G.head = c;
  G.tail = c;
}

// A link's command of one kind is queued at most once: a second ask before the
// relay thread took the first only updates what the command carries.
void enqueue_once(bool *queued, cmd_t *c) {
  if (*queued) return;
  *queued = true;
  enqueue(c);
}

static cmd_t *dequeue(void) {
  cmd_t *c = G.head;
  if (!c) return NULL;
  G.head = c->next;
  if (!G.head) G.tail = NULL;
  return c;
}

static void drain_commands(void) {
  for (;;) {
    pthread_mutex_lock(&G.mu);
    cmd_t *c = dequeue();
    link_t *l = c ? c->link : NULL;
    int kind = 0;
    bool live = false;
    if (c && c->kind == CMD_CLOSE) {
      kind = l->close_kind;
      l->close_queued = false;
    }
    if (c && c->kind == CMD_DETACH) l->detach_queued = false;
    if (c && c->kind == CMD_ANSWER) l->answer_queued = false;
    if (c && c->kind == CMD_REFILTER) l->refilter_queued = false;
    gate_mail_t mail = {0};
    if (c) take_mail(l, c->kind, &mail);  // what relay_answer or relay_refilter left with it (gated.c)
    // Closed already: the owner may free it as soon as the lock is released.
    if (c && c->kind != CMD_ADOPT) live = !l->closed;
    pthread_mutex_unlock(&G.mu);
    if (!c) return;
    if (c->kind == CMD_ADOPT) {
      register_link(l);
      continue;
    }
    if (!live) {
      free(mail.inject);
      judge_filter_free(mail.filter);
      continue;
    }
    // A link's adopt is queued before its id is returned, and so before any command naming its id.
    CHECK(l->registered, "a command taken before the adopt");
    if (c->kind == CMD_ANSWER) {
      // relay_answer queues answers for filtered links only; a stale ticket (a question of before) is ignored.
      if (gate_waits(l) && mail.ticket == l->ticket) on_answer(l, mail.pass, mail.inject, mail.inject_len);
      else free(mail.inject);
      continue;
    }
    if (c->kind == CMD_REFILTER) {
      gate_set_filter(l->gate, mail.filter);  // relay_refilter queues filters for filtered links only
      continue;
    }
    if (c->kind == CMD_DETACH) {
      detach_link(l);
      continue;
    }
    if (kind == 2) {
      close_link(l);
      continue;
    }
    // Graceful: end both streams as Node's end() does, then wait for both ends to answer.
    l->ending = true;
    ended(l, "closing");
    progress(l);
    update_interest(l);
    account(l);
  }
}

static void report_closed(void) {
  while (closed_head) {
    link_t *l = closed_head;
    closed_head = l->next_closed;
    G.cfg.report(l);
  }
}

static int wait_timeout(void) {
  if (!grace_head) return -1;
  int64_t first = INT64_MAX;
  for (link_t *l = grace_head; l; l = l->grace_next)
    if (l->grace_deadline < first) first = l->grace_deadline;
  int64_t wait = first - now_ms();
  return wait <= 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait;
}

static void *relay_main(void *arg) {
  (void)arg;
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(G.epfd, evs, 256, wait_timeout());
    // epoll_wait fails only on EINTR or a bad descriptor or buffer of ours.
    CHECK(n >= 0 || errno == EINTR, "epoll_wait failed");
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == NULL) {
        uint64_t v;
        ssize_t r = read(G.evfd, &v, sizeof v);
        (void)r;
        drain_commands();
        continue;
      }
      handle_event((link_t *)((uintptr_t)p & ~(uintptr_t)1), (uintptr_t)p & 1, evs[i].events);
    }
    if (grace_head) {
      int64_t now = now_ms();
      for (link_t *l = grace_head; l;) {
        link_t *next = l->grace_next;  // close_link takes l off the list
        if (now >= l->grace_deadline) {
          l->grace_expired = true;
          close_link(l);
        }
        l = next;
      }
    }
    // Only now: an event of this round may still have named a link closed in it.
    report_closed();
  }
  return NULL;
}

const relay_config_t *relay_cfg(void) { return &G.cfg; }

bool relay_start(const relay_config_t *cfg, char *err, size_t err_len) {
  if (G.started) return snprintf(err, err_len, "already started"), false;
  if (cfg->read_bytes < MIN_READ || cfg->read_bytes > MAX_READ || cfg->rekey_records == 0 || cfg->max_hs_message == 0 ||
      cfg->max_hs_message > (1u << 24) || !cfg->report || !cfg->ask || cfg->max_gate_held == 0)
    return snprintf(err, err_len, "bad configuration (readBytes %zu to %d)", (size_t)MIN_READ, MAX_READ), false;
  G.cfg = *cfg;
  // Room for carried ciphertext (up to what a hand-over brings) in front of a full read.
  G.plain_cap = cfg->read_bytes + TLS_MAX_RECORD;
  G.plain = malloc(G.plain_cap);
  G.sealed = malloc(SEALED_MAX(cfg->read_bytes));
  if (!G.plain || !G.sealed) return snprintf(err, err_len, "out of memory for scratch buffers"), false;
  pthread_mutex_init(&G.mu, NULL);
  G.epfd = epoll_create1(EPOLL_CLOEXEC);
  G.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (G.epfd < 0 || G.evfd < 0 || epoll_ctl(G.epfd, EPOLL_CTL_ADD, G.evfd, &ev) != 0)
    return snprintf(err, err_len, "epoll: %s", strerror(errno)), false;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int e = pthread_create(&G.thread, &attr, relay_main, NULL);
  pthread_attr_destroy(&attr);
  if (e != 0) return snprintf(err, err_len, "pthread_create: %s", strerror(e)), false;
  pthread_setname_np(G.thread, "beamgate-relay");  // how tests and operators find it in /proc
  pthread_detach(G.thread);
  G.started = true;
  return true;
}

static void free_link(link_t *l) {
  free_filtered(l);
  aead_free(&l->tx);
  rx_free(&l->rx);
  free(l->out.pend);
  free(l->in.pend);
  free(l->carry);
  free(l);
}

// Hands over what Node had read and not relayed: sealed (or written) now, on
// the owner's thread, before the relay thread reads anything of this link.
static bool hand_over_bytes(link_t *l, const relay_adopt_t *a) {
  // Another engine's output comes first: its records precede ours, its plaintext was walked there.
  if (a->sealed_to_remote_len && !out_write(l, &l->out, a->sealed_to_remote, a->sealed_to_remote_len, "peer")) return false;
  if (a->walked_to_local_len && !out_write(l, &l->in, a->walked_to_local, a->walked_to_local_len, "local")) return false;
  if (a->rx_handshake_len) {
    l->rx.hs_cap = 4 + l->rx.max_hs;
    l->rx.hs = malloc(l->rx.hs_cap);
    if (!l->rx.hs) return set_reason(l, "%s", "out of memory for a handed-over handshake message"), false;
    memcpy(l->rx.hs, a->rx_handshake, a->rx_handshake_len);
    l->rx.hs_len = a->rx_handshake_len;
  }
  if (a->to_remote_len) {
    if (!scan(l, &l->out, a->to_remote, a->to_remote_len)) return false;
    // The relay thread's scratch buffers are not ours to use here.
    uint8_t *sealed = malloc(SEALED_MAX(a->to_remote_len));
    if (!sealed) return set_reason(l, "%s", "out of memory for handed-over bytes"), false;
    size_t o = seal_plain(l, a->to_remote, a->to_remote_len, sealed);
    bool ok = o && out_write(l, &l->out, sealed, o, "peer");
    if (!o) set_reason(l, "%s", "the cipher refused an updated key");
    free(sealed);
    if (!ok) return false;
  }
  if (a->to_local_len && !scan(l, &l->in, a->to_local, a->to_local_len)) return false;
  if (a->to_local_len && l->gate) {
    // Judged on the relay thread once the link has its id (a question names it).
    if (!keep_seed(l, a->to_local, a->to_local_len)) return false;
  } else if (a->to_local_len && !out_write(l, &l->in, a->to_local, a->to_local_len, "local")) {
    return false;
  }
  if (a->from_remote_len) {
    l->carry = malloc(a->from_remote_len);
    if (!l->carry) return set_reason(l, "%s", "out of memory for handed-over records"), false;
    memcpy(l->carry, a->from_remote, a->from_remote_len);
    l->carry_len = l->carry_cap = a->from_remote_len;
  }
  return true;
}

long relay_adopt(const relay_adopt_t *a, char *err, size_t err_len) {
  if (!G.started) return snprintf(err, err_len, "not started"), -1;
  if (a->from_remote_len > G.plain_cap) return snprintf(err, err_len, "%zu bytes of unopened records exceed %zu", a->from_remote_len, G.plain_cap), -1;
  // Less than a whole message: a whole one would have been taken where it was read.
  if (a->rx_handshake_len >= 4 + G.cfg.max_hs_message)
    return snprintf(err, err_len, "%zu bytes of a handshake message exceed %zu", a->rx_handshake_len, 4 + G.cfg.max_hs_message), -1;
  if (a->gate && (a->in_scan.remaining || a->in_scan.header_bytes || a->walked_to_local_len || a->rx_handshake_len))
    return snprintf(err, err_len, "a filtered link is handed over between frames, from node:tls"), -1;
  if (a->gate && (a->in_scan.hs.side != HS_DONE || a->out_scan.hs.side != HS_DONE))
    return snprintf(err, err_len, "a filtered link is handed over once its handshake is over"), -1;
  // Another engine's link (a take-over) is detached framed: its handshake state is not exported.
  if ((a->sealed_to_remote_len || a->walked_to_local_len || a->rx_handshake_len) && (a->in_scan.hs.side != HS_DONE || a->out_scan.hs.side != HS_DONE))
    return snprintf(err, err_len, "a detached link is handed over framed"), -1;
  link_t *l = calloc(1, sizeof *l);
  if (!l) return snprintf(err, err_len, "out of memory for a link"), -1;
  if (!aead_init(&l->tx, a->cipher, a->hash, a->tx_secret, a->tx_secret_len, a->tx_seq, true) ||
      !aead_init(&l->rx.aead, a->cipher, a->hash, a->rx_secret, a->rx_secret_len, a->rx_seq, false)) {
    free_link(l);
    return snprintf(err, err_len, "cipher set-up failed (%s, %s)", a->cipher, a->hash), -1;
  }
  l->rx.we_are_client = a->client;
  l->rx.max_hs = G.cfg.max_hs_message;
  l->lfd = fcntl(a->local_fd, F_DUPFD_CLOEXEC, 3);
  l->rfd = fcntl(a->remote_fd, F_DUPFD_CLOEXEC, 3);
  if (l->lfd < 0 || l->rfd < 0) {
    snprintf(err, err_len, "cannot duplicate the sockets: %s", strerror(errno));
    if (l->lfd >= 0) close(l->lfd);
    if (l->rfd >= 0) close(l->rfd);
    free_link(l);
    return -1;
  }
  fcntl(l->lfd, F_SETFL, fcntl(l->lfd, F_GETFL) | O_NONBLOCK);
  fcntl(l->rfd, F_SETFL, fcntl(l->rfd, F_GETFL) | O_NONBLOCK);
  l->out.dst = l->rfd;
  l->in.dst = l->lfd;
  l->out.scan = a->out_scan;
  l->in.scan = a->in_scan;
  atomic_store(&l->out.frames, a->out_frames);
  atomic_store(&l->out.ticks, a->out_ticks);
  atomic_store(&l->in.frames, a->in_frames);
  atomic_store(&l->in.ticks, a->in_ticks);
  l->grace_ms = a->grace_ms;
  l->gate = a->gate;
  l->adopt_cmd.link = l->close_cmd.link = l->detach_cmd.link = l->answer_cmd.link = l->refilter_cmd.link = l;
  l->answer_cmd.kind = CMD_ANSWER;
  l->refilter_cmd.kind = CMD_REFILTER;
  l->adopt_cmd.kind = CMD_ADOPT;
  l->close_cmd.kind = CMD_CLOSE;
  l->detach_cmd.kind = CMD_DETACH;
  atomic_store(&l->handshaking, a->out_scan.hs.side != HS_DONE || a->in_scan.hs.side != HS_DONE);
  bool handed = hand_over_bytes(l, a);  // may end the handshake (scan clears the flag)
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
    l->id = id;
    G.table[id] = l;
    G.next_id = (id + 1) % MAX_LINKS;  // round robin: an id is not reused at once
    if (handed) enqueue(&l->adopt_cmd);
  }
  pthread_mutex_unlock(&G.mu);
  if (id == UINT32_MAX) {
    close(l->lfd);
    close(l->rfd);
    l->gate = NULL;  // still the caller's: nothing was taken
    free_link(l);
    return snprintf(err, err_len, "link table full (%d)", MAX_LINKS), -1;
  }
  if (handed) {
    wake();
  } else {
    // A hand-over that failed on its first bytes is reported like any other close.
    l->closed = true;
    close(l->lfd);
    close(l->rfd);
    G.cfg.report(l);
  }
  return id;
}

// Owner thread only: it alone writes the table (under G.mu), so it reads it without the lock.
link_t *link_of(uint32_t id) { return id < MAX_LINKS ? G.table[id] : NULL; }

void queue_lock(void) { pthread_mutex_lock(&G.mu); }

void queue_unlock(void) { pthread_mutex_unlock(&G.mu); }

bool relay_close(uint32_t id, bool abortive) {
  // An entry stays until its close has been reported and released on this thread.
  link_t *l = link_of(id);
  if (!l) return false;
  pthread_mutex_lock(&G.mu);
  enqueue_once(&l->close_queued, &l->close_cmd);
  int kind = abortive ? 2 : 1;
  if (kind > l->close_kind) l->close_kind = kind;
  pthread_mutex_unlock(&G.mu);
  wake();
  return true;
}

bool relay_detach(uint32_t id) {
  link_t *l = link_of(id);
  if (!l) return false;
  pthread_mutex_lock(&G.mu);
  enqueue_once(&l->detach_queued, &l->detach_cmd);
  pthread_mutex_unlock(&G.mu);
  wake();
  return true;
}

// Written by the relay thread before it reported the link; the report is the hand-off.
bool relay_link_detached(const link_t *l, relay_export_t *out) {
  if (!l->detached) return false;
  memset(out, 0, sizeof *out);
  out->local_fd = l->lfd;
  out->remote_fd = l->rfd;
  out->tx_secret = l->tx.secret;
  out->rx_secret = l->rx.aead.secret;
  out->secret_len = l->tx.secret_len;
  out->tx_seq = l->tx.seq;
  out->rx_seq = l->rx.aead.seq;
  out->tx_updates = l->tx.updates;
  out->rx_updates = l->rx.aead.updates;
  out->sealed_to_remote = l->out.pend ? l->out.pend + l->out.pend_off : NULL;
  out->sealed_to_remote_len = l->out.pend_len;
  out->walked_to_local = l->in.pend ? l->in.pend + l->in.pend_off : NULL;
  out->walked_to_local_len = l->in.pend_len;
  out->from_remote = l->carry;
  out->from_remote_len = l->carry_len;
  out->rx_handshake = l->rx.hs;
  out->rx_handshake_len = l->rx.hs ? l->rx.hs_len : 0;
  out->out_scan = l->out.scan;
  out->in_scan = l->in.scan;
  return true;
}

void relay_link_counters(const link_t *l, uint64_t out[RELAY_COUNTERS]) {
  out[0] = atomic_load_explicit(&l->out.bytes, memory_order_relaxed);
  out[1] = atomic_load_explicit(&l->in.bytes, memory_order_relaxed);
  out[2] = atomic_load_explicit(&l->out.frames, memory_order_relaxed);
  out[3] = atomic_load_explicit(&l->in.frames, memory_order_relaxed);
  out[4] = atomic_load_explicit(&l->out.ticks, memory_order_relaxed);
  out[5] = atomic_load_explicit(&l->in.ticks, memory_order_relaxed);
  out[6] = atomic_load_explicit(&l->key_updates_out, memory_order_relaxed);
  out[7] = atomic_load_explicit(&l->key_updates_in, memory_order_relaxed);
  out[8] = atomic_load_explicit(&l->judged, memory_order_relaxed);
  out[9] = atomic_load_explicit(&l->asked, memory_order_relaxed);
}

bool relay_stats(uint32_t id, uint64_t out[RELAY_COUNTERS]) {
  link_t *l = link_of(id);
  if (!l) return false;
  relay_link_counters(l, out);
  return true;
}

bool relay_handshaking(uint32_t id, bool *handshaking) {
  link_t *l = link_of(id);
  if (!l) return false;
  *handshaking = atomic_load_explicit(&l->handshaking, memory_order_acquire);
  return true;
}

size_t relay_buffered(void) { return atomic_load_explicit(&G.held, memory_order_relaxed); }

uint32_t relay_link_id(const link_t *l) { return l->id; }

// Written by the relay thread before it reported the link; the report is the hand-off.
const char *relay_link_reason(const link_t *l) { return l->reason; }

// Under G.mu: takes a queued command out of the FIFO.
static void unqueue(cmd_t *c) {
  cmd_t **pp = &G.head, *prev = NULL;
  while (*pp && *pp != c) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  // Each *_queued flag is set exactly while its command is in the queue, under this lock.
  CHECK(*pp == c, "queued command not found");
  *pp = c->next;
  if (G.tail == c) G.tail = prev;
}

void relay_release(link_t *l) {
  pthread_mutex_lock(&G.mu);
  G.table[l->id] = NULL;
  // Asked to close or detach after it had closed by itself: the request is still queued.
  if (l->close_queued) unqueue(&l->close_cmd);
  if (l->detach_queued) unqueue(&l->detach_cmd);
  if (l->answer_queued) unqueue(&l->answer_cmd);
  if (l->refilter_queued) unqueue(&l->refilter_cmd);
  l->close_queued = l->detach_queued = l->answer_queued = l->refilter_queued = false;
  pthread_mutex_unlock(&G.mu);
  free_link(l);
}
