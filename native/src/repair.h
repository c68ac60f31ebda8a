/*
 * TCP_REPAIR dump and restore as plain C++ (repair.cc), for the JS functions there and for
 * probe.cc, which restores answered connections on its worker thread.
 */
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "common.h"

namespace wedge {

/* What a restore sets on the new socket. */
struct RestoreSpec {
  sockaddr_in local{}, remote{};
  uint32_t sendSeq = 0, recvSeq = 0, mss = 0, sndWscale = 0, rcvWscale = 0, timestamp = 0;
  bool windowScaling = false, sack = false, timestamps = false;
  tcp_repair_window window{};
  uint32_t mark = 0;  // SO_MARK, 0: none
};

/* A connection's recorded transport, waiting for its client's answer to become a RestoreSpec. */
struct RestoreBase {
  uint32_t mss = 0, sndWscale = 0, rcvWscale = 0, timestamp = 0, maxWindow = 0, rcvWnd = 0;
  bool windowScaling = false, sack = false, timestamps = false;
  double clockReadAt = 0;  // wall clock (ms) at which `timestamp` was read
  uint32_t timestampMarginMs = 0, mark = 0;
};

/* The client's answer to a probe: its rcv_nxt (ack), snd_nxt (seq) and unscaled window. */
struct ClientPosition {
  uint32_t ack = 0, seq = 0, window = 0;
};

/* The restore policy: the spec for `base` resumed at `at`, with the timestamp clock carried to
 * `nowMs`. The only one: every restore goes through it. */
RestoreSpec SpecFor(const RestoreBase& base, const sockaddr_in& local, const sockaddr_in& remote, const ClientPosition& at, double nowMs);

/* Reads JS's RawRestoreBase (native/addon.ts); throws a TypeError and returns false if malformed. */
bool ReadRestoreBase(const Napi::Object& o, RestoreBase* b);

/* A new ESTABLISHED, non-blocking, close-on-exec socket built from `spec`, without a handshake. */
SysError RestoreSocket(const RestoreSpec& spec, Fd* out);

/* A live socket's transport state, as dump() reports it. */
struct SocketDump {
  sockaddr_in local{}, remote{};
  uint32_t sendSeq = 0, recvSeq = 0, timestamp = 0;
  double clockReadAt = 0;
  tcp_repair_window window{};
  tcp_info info{};
  uint64_t bytesReceived = 0;
};

SysError DumpSocket(int fd, SocketDump* out);
Napi::Object DumpToJs(Napi::Env env, const SocketDump& dump);

double WallClockMs();

}  // namespace wedge
