// exports.passfd: the take-over channel's descriptor passing (passfd.h).
// One message is an 8-byte header (payload length, descriptor count, both
// big-endian) that carries the descriptors as SCM_RIGHTS, then the payload.
// send and recv run on libuv's thread pool with a deadline each, so neither
// gateway's event loop waits on the other process; everything a peer process
// can get wrong (a short message, too many descriptors, a bad length, a
// deadline) rejects the promise and closes what was received.

#define _GNU_SOURCE
#include "passfd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HDR 8

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int64_t deadline;  // ms, monotonic
  bool sending;
  uint8_t *data;
  size_t len, max_bytes;
  int fds[PASSFD_MAX_FDS];
  size_t nfds, max_fds;
  char err[200];
} io_t;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Waits until fd is ready for `events`, or the deadline; false with err set.
static bool wait_for(io_t *io, short events) {
  for (;;) {
    int64_t left = io->deadline - now_ms();
    if (left <= 0) return snprintf(io->err, sizeof io->err, "timed out"), false;
    struct pollfd p = {.fd = io->fd, .events = events};
    int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return snprintf(io->err, sizeof io->err, "poll: %s", strerror(errno)), false;
    if (n == 0) continue;
    if (p.revents & (events | POLLHUP | POLLERR)) return true;
  }
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static bool write_all(io_t *io, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t w = send(io->fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(io, POLLOUT)) return false;
      continue;
    }
    return snprintf(io->err, sizeof io->err, "send: %s", strerror(errno)), false;
  }
  return true;
}

static void do_send(io_t *io) {
  uint8_t hdr[HDR];
  put32(hdr, (uint32_t)io->len);
  put32(hdr + 4, (uint32_t)io->nfds);
  union {
    char buf[CMSG_SPACE(sizeof(int) * PASSFD_MAX_FDS)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {.iov_base = hdr, .iov_len = HDR};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (io->nfds) {
    memset(&u, 0, sizeof u);
    msg.msg_control = u.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * io->nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * io->nfds);
    memcpy(CMSG_DATA(c), io->fds, sizeof(int) * io->nfds);
  }
  // The header goes in one sendmsg: the descriptors ride its first byte.
  for (;;) {
    ssize_t w = sendmsg(io->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w == HDR) break;
    if (w > 0) {
      // A partial header: the descriptors went with its first byte; the rest goes plain.
      if (!write_all(io, hdr + w, HDR - (size_t)w)) return;
      break;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(io, POLLOUT)) return;
      continue;
    }
    snprintf(io->err, sizeof io->err, "sendmsg: %s", strerror(errno));
    return;
  }
  write_all(io, io->data, io->len);
}

static void close_received(io_t *io) {
  for (size_t i = 0; i < io->nfds; i++) close(io->fds[i]);
  io->nfds = 0;
}

// Takes the descriptors of one control message; false (err set) if they do not fit.
static bool take_fds(io_t *io, struct msghdr *msg) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (io->nfds < PASSFD_MAX_FDS) io->fds[io->nfds++] = fd;
      else close(fd);
    }
  }
  // Truncated (one control message over the room asked for) or gathered over a split header: either way, more than asked.
  if ((msg->msg_flags & MSG_CTRUNC) || io->nfds > io->max_fds) return snprintf(io->err, sizeof io->err, "more descriptors than %zu", io->max_fds), false;
  return true;
}

static void do_recv(io_t *io) {
  uint8_t hdr[HDR];
  size_t got = 0;
  union {
    char buf[CMSG_SPACE(sizeof(int) * PASSFD_MAX_FDS)];
    struct cmsghdr align;
  } u;
  while (got < HDR) {
    struct iovec iov = {.iov_base = hdr + got, .iov_len = HDR - got};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = CMSG_SPACE(sizeof(int) * io->max_fds)};
    ssize_t r = recvmsg(io->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (r > 0) {
      got += (size_t)r;
      if (!take_fds(io, &msg)) return close_received(io);
      continue;
    }
    if (r == 0) {
      snprintf(io->err, sizeof io->err, got ? "connection closed inside a message header" : "connection closed");
      return close_received(io);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(io, POLLIN)) return close_received(io);
      continue;
    }
    snprintf(io->err, sizeof io->err, "recvmsg: %s", strerror(errno));
    return close_received(io);
  }
  uint32_t len = get32(hdr), nfds = get32(hdr + 4);
  if (nfds != io->nfds) {
    snprintf(io->err, sizeof io->err, "header announced %u descriptors, %zu came", nfds, io->nfds);
    return close_received(io);
  }
  if (len > io->max_bytes) {
    snprintf(io->err, sizeof io->err, "message of %u bytes exceeds %zu", len, io->max_bytes);
    return close_received(io);
  }
  io->data = malloc(len ? len : 1);
  if (!io->data) {
    snprintf(io->err, sizeof io->err, "out of memory for %u bytes", len);
    return close_received(io);
  }
  io->len = len;
  size_t off = 0;
  while (off < len) {
    ssize_t r = recv(io->fd, io->data + off, len - off, MSG_DONTWAIT);
    if (r > 0) {
      off += (size_t)r;
      continue;
    }
    if (r == 0) {
      snprintf(io->err, sizeof io->err, "connection closed after %zu of %u bytes", off, len);
      return close_received(io);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(io, POLLIN)) return close_received(io);
      continue;
    }
    snprintf(io->err, sizeof io->err, "recv: %s", strerror(errno));
    return close_received(io);
  }
}

static void execute(napi_env env, void *data) {
  (void)env;
  io_t *io = data;
  if (io->sending) do_send(io);
  else do_recv(io);
}

static void complete(napi_env env, napi_status status, void *data) {
  io_t *io = data;
  napi_value res = NULL, err_msg, err;
  if (status != napi_ok && !io->err[0]) snprintf(io->err, sizeof io->err, "cancelled");
  if (io->err[0]) {
    char msg[240];
    snprintf(msg, sizeof msg, "passfd: %s", io->err);
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &err_msg);
    napi_create_error(env, NULL, err_msg, &err);
    napi_reject_deferred(env, io->deferred, err);
  } else {
    if (io->sending) {
      napi_get_undefined(env, &res);
    } else {
      napi_value buf, arr;
      void *p = NULL;
      napi_create_object(env, &res);
      napi_create_buffer_copy(env, io->len, io->len ? io->data : (const uint8_t *)"", &p, &buf);
      napi_set_named_property(env, res, "data", buf);
      napi_create_array_with_length(env, io->nfds, &arr);
      for (size_t i = 0; i < io->nfds; i++) {
        napi_value v;
        napi_create_int32(env, io->fds[i], &v);
        napi_set_element(env, arr, (uint32_t)i, v);
      }
      napi_set_named_property(env, res, "fds", arr);
    }
    napi_resolve_deferred(env, io->deferred, res);
  }
  napi_delete_async_work(env, io->work);
  free(io->data);
  free(io);
}

static bool arg_int(napi_env env, napi_value v, int64_t lo, int64_t hi, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d != (double)(int64_t)d || d < (double)lo || d > (double)hi) return false;
  *out = (int64_t)d;
  return true;
}

static napi_value start(napi_env env, io_t *io) {
  napi_value promise, name;
  if (napi_create_promise(env, &io->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "beamgate-passfd", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, io, &io->work) != napi_ok || napi_queue_async_work(env, io->work) != napi_ok) {
    free(io->data);
    free(io);
    napi_throw_error(env, NULL, "passfd: cannot queue the operation");
    return NULL;
  }
  return promise;
}

// send(fd, data, fds, timeoutMs) -> Promise<void>
static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int64_t fd, timeout;
  void *p;
  size_t len;
  uint32_t n;
  bool is_arr = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 || !arg_int(env, argv[0], 0, INT32_MAX, &fd) ||
      napi_get_buffer_info(env, argv[1], &p, &len) != napi_ok || len > UINT32_MAX || napi_is_array(env, argv[2], &is_arr) != napi_ok || !is_arr ||
      napi_get_array_length(env, argv[2], &n) != napi_ok || n > PASSFD_MAX_FDS || !arg_int(env, argv[3], 1, INT32_MAX, &timeout)) {
    napi_throw_type_error(env, NULL, "passfd: send(fd, buffer, fds (at most 250), timeoutMs)");
    return NULL;
  }
  io_t *io = calloc(1, sizeof *io);
  if (!io || !(io->data = malloc(len ? len : 1))) {
    free(io);
    napi_throw_error(env, NULL, "passfd: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    int64_t f;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || !arg_int(env, v, 0, INT32_MAX, &f)) {
      free(io->data);
      free(io);
      napi_throw_type_error(env, NULL, "passfd: descriptors are non-negative integers");
      return NULL;
    }
    io->fds[i] = (int)f;
  }
  memcpy(io->data, p, len);
  io->len = len;
  io->nfds = n;
  io->fd = (int)fd;
  io->sending = true;
  io->deadline = now_ms() + timeout;
  return start(env, io);
}

// recv(fd, maxBytes, maxFds, timeoutMs) -> Promise<{data, fds}>
static napi_value js_recv(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int64_t fd, max_bytes, max_fds, timeout;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 || !arg_int(env, argv[0], 0, INT32_MAX, &fd) ||
      !arg_int(env, argv[1], 0, UINT32_MAX, &max_bytes) || !arg_int(env, argv[2], 0, PASSFD_MAX_FDS, &max_fds) ||
      !arg_int(env, argv[3], 1, INT32_MAX, &timeout)) {
    napi_throw_type_error(env, NULL, "passfd: recv(fd, maxBytes, maxFds (at most 250), timeoutMs)");
    return NULL;
  }
  io_t *io = calloc(1, sizeof *io);
  if (!io) {
    napi_throw_error(env, NULL, "passfd: out of memory");
    return NULL;
  }
  io->fd = (int)fd;
  io->max_bytes = (size_t)max_bytes;
  io->max_fds = (size_t)max_fds;
  io->deadline = now_ms() + timeout;
  return start(env, io);
}

// The error's `code` names the two errors a caller tells apart: nobody at the
// path (ENOENT) and nobody listening on it (ECONNREFUSED, a socket file left
// by a process that is gone). `beamgate run --take-over-if-running` starts
// afresh on either.
static void throw_errno(napi_env env, const char *what) {
  char msg[240];
  const char *code = errno == ENOENT ? "ENOENT" : errno == ECONNREFUSED ? "ECONNREFUSED" : NULL;
  snprintf(msg, sizeof msg, "passfd: %s: %s", what, strerror(errno));
  napi_throw_error(env, code, msg);
}

// connect(path) -> fd: a non-blocking, close-on-exec Unix stream socket connected to path.
static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 1, n = 0;
  napi_value argv[1], res;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_string_utf8(env, argv[0], sa.sun_path, sizeof sa.sun_path, &n) != napi_ok || n == 0 || n >= sizeof sa.sun_path - 1) {
    napi_throw_type_error(env, NULL, "passfd: connect(path) with a path of at most 106 bytes");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket");
    return NULL;
  }
  // A Unix socket connects at once or not at all (its backlog full is EAGAIN only when non-blocking).
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    throw_errno(env, sa.sun_path);
    return NULL;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  napi_create_int32(env, fd, &res);
  return res;
}

// dup(fd) -> a close-on-exec duplicate.
static napi_value js_dup(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res;
  int64_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || !arg_int(env, argv[0], 0, INT32_MAX, &fd)) {
    napi_throw_type_error(env, NULL, "passfd: dup(fd)");
    return NULL;
  }
  int d = fcntl((int)fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) {
    throw_errno(env, "dup");
    return NULL;
  }
  napi_create_int32(env, d, &res);
  return res;
}

// peer(fd) -> {pid, uid, gid} of the process at the other end of a Unix socket.
static napi_value js_peer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res, v;
  int64_t fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || !arg_int(env, argv[0], 0, INT32_MAX, &fd)) {
    napi_throw_type_error(env, NULL, "passfd: peer(fd)");
    return NULL;
  }
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw_errno(env, "SO_PEERCRED");
    return NULL;
  }
  napi_create_object(env, &res);
  napi_create_int32(env, cred.pid, &v);
  napi_set_named_property(env, res, "pid", v);
  napi_create_uint32(env, cred.uid, &v);
  napi_set_named_property(env, res, "uid", v);
  napi_create_uint32(env, cred.gid, &v);
  napi_set_named_property(env, res, "gid", v);
  return res;
}

bool passfd_define(napi_env env, napi_value exports) {
  napi_value obj;
  napi_property_descriptor props[] = {
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"dup", NULL, js_dup, NULL, NULL, NULL, napi_default, NULL},
      {"peer", NULL, js_peer, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"recv", NULL, js_recv, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_create_object(env, &obj) == napi_ok && napi_define_properties(env, obj, sizeof props / sizeof props[0], props) == napi_ok &&
         napi_set_named_property(env, exports, "passfd", obj) == napi_ok;
}
