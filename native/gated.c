// A filtered link on the relay thread: what it does with the bytes headed
// for its node, and with the frames of the gateway's own headed for the
// peer. Opened bytes go through the link's gate (gate.h) instead of straight
// to the node; a question the gate asks goes to the owner (relay_config_t's
// ask), whose answer comes back through the command queue (relay_answer);
// a frame of the gateway's own (a denied spawn request's reply) waits for a
// frame boundary of the node's and goes to the peer between two of its frames.
//
// The link and its state are relay.c's (link.h, private to the two files);
// this file adds no thread and shares nothing new with the owner: its two
// counters in F are atomics, as they were in relay.c (the owner reads
// gate_held through relay_gate_held). relay_answer and relay_refilter run
// on the owner thread and only queue a command under the queue's lock, as
// relay_close does.

#include "link.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// Frames of the gateway's own a filtered link may hold for the peer, waiting for a frame boundary
// of the node's (denied spawn requests' replies, about 100 bytes each; MAX_PENDING_SPAWN_REPLIES in JS).
#define MAX_INJECT (16 * 1024)

static struct {
  _Atomic uint64_t gate_held;  // of relay_buffered(), what filtered links hold for messages not yet judged
  _Atomic uint64_t tickets;    // questions asked so far: a ticket is never reused
} F;

// Brings F.gate_held up to date with what `l`'s gate holds (0 once closed);
// false, with the reason, when every filtered link together holds too much.
bool gate_account(link_t *l) {
  if (!l->gate) return true;
  uint64_t now = l->closed ? 0 : gate_held(l->gate);
  uint64_t total;
  if (now >= l->gate_held) total = atomic_fetch_add_explicit(&F.gate_held, now - l->gate_held, memory_order_relaxed) + (now - l->gate_held);
  else total = atomic_fetch_sub_explicit(&F.gate_held, l->gate_held - now, memory_order_relaxed) - (l->gate_held - now);
  l->gate_held = now;
  atomic_store_explicit(&l->judged, gate_passed(l->gate), memory_order_relaxed);
  atomic_store_explicit(&l->asked, gate_asked(l->gate), memory_order_relaxed);
  if (total <= relay_cfg()->max_gate_held) return true;
  set_reason(l, "refused:buffer_limit:filtered links hold %llu bytes of messages not yet judged, over the gateway's %llu (FILTER_MAX_HELD_BYTES); this one holds %llu",
             (unsigned long long)total, (unsigned long long)relay_cfg()->max_gate_held, (unsigned long long)now);
  return false;
}

static bool send_walked(link_t *l, const uint8_t *p, size_t n, uint8_t *sealed) {
  if (!scan(l, &l->out, p, n)) return false;
  size_t o = seal_plain(l, p, n, sealed);
  if (!o) {
    set_reason(l, "%s", "the cipher refused an updated key");
    return false;
  }
  return out_write(l, &l->out, sealed, o, "peer");
}

// Our own frames for the peer, now that the node's stream is between frames.
static bool send_inject(link_t *l, uint8_t *sealed) {
  uint8_t *p = l->inject;
  size_t n = l->inject_len;
  l->inject = NULL;
  l->inject_len = 0;
  bool ok = send_walked(l, p, n, sealed);
  free(p);
  return ok;
}

// The node's bytes for the peer; frames of ours waiting go at the first frame boundary.
bool send_plain(link_t *l, const uint8_t *p, size_t n, uint8_t *sealed) {
  if (l->inject_len) {
    size_t k = frames_boundary(&l->out.scan, p, n);
    if (k != SIZE_MAX) {
      if (k && !send_walked(l, p, k, sealed)) return false;
      if (!send_inject(l, sealed)) return false;
      p += k;
      n -= k;
    }
  }
  return n == 0 || send_walked(l, p, n, sealed);
}

static bool emit_local(void *ctx, const uint8_t *p, size_t n) {
  link_t *l = ctx;
  return out_write(l, &l->in, p, n, "local");
}

// What a gate call ended in: a question goes to the owner, a failure cuts the link.
static bool gate_after(link_t *l, gate_status_t s, judge_out_t *q, const char *why) {
  if (s == GATE_FAIL) {
    if (why[0]) set_reason(l, "%s", why);
    return false;
  }
  if (s == GATE_ASK) {
    l->ticket = atomic_fetch_add_explicit(&F.tickets, 1, memory_order_relaxed) + 1;
    if (!relay_cfg()->ask(l->id, l->ticket, q)) {
      set_reason(l, "%s", "out of memory for a question to the gateway's judge");
      return false;
    }
  }
  return gate_account(l);
}

// Opened bytes for the local node: through the gate on a filtered link.
bool deliver_in(link_t *l, const uint8_t *p, size_t n) {
  if (!l->gate) return out_write(l, &l->in, p, n, "local");
  judge_out_t q;
  char why[REASON_LEN];
  return gate_after(l, gate_push(l->gate, p, n, emit_local, l, &q, why, sizeof why), &q, why);
}

// The plaintext node:tls opened before the hand-over, kept on the owner's
// thread (relay_adopt, before the link is queued and so before the relay
// thread can see it).
bool keep_seed(link_t *l, const uint8_t *p, size_t n) {
  l->seed = malloc(n);
  if (!l->seed) return set_reason(l, "%s", "out of memory for handed-over bytes"), false;
  memcpy(l->seed, p, n);
  l->seed_len = n;
  return true;
}

// The seed through the gate, once the link is registered and has its id (a question names it).
bool deliver_seed(link_t *l) {
  uint8_t *seed = l->seed;
  size_t n = l->seed_len;
  l->seed = NULL;
  l->seed_len = 0;
  bool ok = deliver_in(l, seed, n);
  free(seed);
  return ok;
}

// The gateway's answer to the question open on a filtered link (relay.c goes
// on with what it unblocks).
bool take_answer(link_t *l, bool pass, uint8_t *inject, size_t inject_len, uint8_t *sealed) {
  judge_out_t q;
  char why[REASON_LEN];
  bool ok = gate_after(l, gate_answer(l->gate, pass, emit_local, l, &q, why, sizeof why), &q, why);
  if (ok && inject_len && !l->out.notify_sent) {
    // Over MAX_INJECT the reply is dropped, as the node:tls path drops one over MAX_PENDING_SPAWN_REPLIES.
    if (l->inject_len + inject_len <= MAX_INJECT) {
      uint8_t *grown = realloc(l->inject, l->inject_len + inject_len);
      if (grown) {
        memcpy(grown + l->inject_len, inject, inject_len);
        l->inject = grown;
        l->inject_len += inject_len;
      }
    }
    if (l->inject_len && l->out.scan.remaining == 0 && l->out.scan.header_bytes == 0) ok = send_inject(l, sealed);
  }
  free(inject);
  return ok;
}

// Under the queue's lock, as drain_commands takes a command: what
// relay_answer or relay_refilter left with it (nothing for any other command).
void take_mail(link_t *l, cmd_kind kind, gate_mail_t *m) {
  if (kind == CMD_ANSWER) {
    m->pass = l->answer_pass;
    m->ticket = l->answer_ticket;
    m->inject = l->answer_inject;
    m->inject_len = l->answer_inject_len;
    l->answer_inject = NULL;
    l->answer_inject_len = 0;
  }
  if (kind == CMD_REFILTER) {
    m->filter = l->next_filter;
    l->next_filter = NULL;
  }
}

bool relay_answer(uint32_t id, uint64_t ticket, bool pass, const uint8_t *inject, size_t inject_len) {
  link_t *l = link_of(id);
  if (!l || !l->gate) return false;
  uint8_t *copy = NULL;
  if (inject_len) {
    copy = malloc(inject_len);
    if (!copy) return false;
    memcpy(copy, inject, inject_len);
  }
  queue_lock();
  // One question is open at a time, and it has the highest ticket yet: of two
  // answers still queued (a late one for a question of before), that one's wins.
  if (l->answer_queued && l->answer_ticket > ticket) {
    queue_unlock();
    free(copy);
    return true;
  }
  free(l->answer_inject);
  l->answer_ticket = ticket;
  l->answer_pass = pass;
  l->answer_inject = copy;
  l->answer_inject_len = inject_len;
  enqueue_once(&l->answer_queued, &l->answer_cmd);
  queue_unlock();
  wake();
  return true;
}

bool relay_refilter(uint32_t id, judge_filter_t *f) {
  link_t *l = link_of(id);
  if (!l || !l->gate) {
    judge_filter_free(f);
    return false;
  }
  queue_lock();
  judge_filter_free(l->next_filter);  // a reload's filter not yet in force: the newer one wins
  l->next_filter = f;
  enqueue_once(&l->refilter_queued, &l->refilter_cmd);
  queue_unlock();
  wake();
  return true;
}

uint64_t relay_gate_held(void) { return atomic_load_explicit(&F.gate_held, memory_order_relaxed); }

// What a filtered link holds beyond any link's state, freed with it on the owner's thread.
void free_filtered(link_t *l) {
  gate_free(l->gate);
  free(l->seed);
  free(l->inject);
  free(l->answer_inject);
  judge_filter_free(l->next_filter);
}
