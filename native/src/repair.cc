/*
 * Theory of operation: TCP_REPAIR dump and restore of one connection's transport state.
 *
 * Goal: let another replica rebuild the server side of a live TCP connection so that its own
 * kernel carries on (retransmission, congestion control) at the exact next byte.
 *
 * dump(fd): on the live, serving socket: TCP_INFO (negotiated MSS, window scales, SACK and
 * timestamp flags), then TCP_REPAIR on; TCP_QUEUE_SEQ of the send queue (write_seq: ISN+1 plus
 * every byte ever written) and of the receive queue (rcv_nxt), TCP_TIMESTAMP (the clock this
 * socket stamps on segments, read together with the wall clock), TCP_REPAIR_WINDOW; TCP_REPAIR
 * off. Repair mode only freezes transmission while it is on; leaving it sends one window probe,
 * which the peer answers with a plain ACK. Nothing is lost or reordered.
 *
 * restore: the policy (SpecFor) turns a recorded connection and its client's answer into the
 * spec: sequences from the answer, options from the record, the timestamp clock carried to now
 * plus a margin, the window from both. That spec builds an ESTABLISHED socket without a
 * handshake. Order matters:
 *   SO_REUSEADDR before TCP_REPAIR=1 (entering repair sets the force-reuse mode that lets us bind
 *   beside a listener on the same port; SO_REUSEADDR afterwards would downgrade it), queue
 *   sequences before connect (allowed only while CLOSED), bind, connect (in repair mode it sends
 *   nothing and goes straight to ESTABLISHED), then options, clock and window (allowed only once
 *   ESTABLISHED), then TCP_REPAIR=0. The fd is returned non-blocking and close-on-exec, ready for
 *   `new net.Socket({ fd })`.
 *
 * setRepair(fd, on): a socket closed while in repair mode vanishes without FIN or RST; that is
 * how quietClose() drops a connection another replica has taken.
 *
 * Limits: IPv4. The policy lives here alone: the synchronous restore() and probeMany's
 * restoring targets (probe.cc) both call SpecFor.
 */
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include <vector>

#include "repair.h"

namespace wedge {
namespace {

/* A receive window for a record that has none. */
constexpr uint32_t kFallbackReceiveWindow = 65535;

SysError SetInt(int fd, int level, int option, int value, const char* what) {
  if (setsockopt(fd, level, option, &value, sizeof value) < 0) return Fail("setsockopt", errno, what);
  return {};
}

template <typename T>
SysError GetOpt(int fd, int option, T* out, const char* what) {
  socklen_t len = sizeof *out;
  if (getsockopt(fd, IPPROTO_TCP, option, out, &len) < 0) return Fail("getsockopt", errno, what);
  return {};
}

SysError ReadQueueSeq(int fd, int queue, uint32_t* seq) {
  if (SysError e = SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE")) return e;
  return GetOpt(fd, TCP_QUEUE_SEQ, seq, "TCP_QUEUE_SEQ");
}

SysError WriteQueueSeq(int fd, int queue, uint32_t seq) {
  if (SysError e = SetInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE")) return e;
  if (setsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &seq, sizeof seq) < 0)
    return Fail("setsockopt", errno, "TCP_QUEUE_SEQ");
  return {};
}

/* Reads everything that needs repair mode, and always leaves repair mode again. */
SysError ReadRepairState(int fd, SocketDump* s) {
  if (SysError e = SetInt(fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON, "TCP_REPAIR=1")) return e;
  SysError e = ReadQueueSeq(fd, TCP_SEND_QUEUE, &s->sendSeq);
  if (!e) e = ReadQueueSeq(fd, TCP_RECV_QUEUE, &s->recvSeq);
  if (!e) {
    e = GetOpt(fd, TCP_TIMESTAMP, &s->timestamp, "TCP_TIMESTAMP");
    s->clockReadAt = WallClockMs();
  }
  if (!e) e = GetOpt(fd, TCP_REPAIR_WINDOW, &s->window, "TCP_REPAIR_WINDOW");
  SysError off = SetInt(fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF, "TCP_REPAIR=0");
  return e ? e : off;
}

SysError ReadEndpoints(int fd, sockaddr_in* local, sockaddr_in* remote) {
  socklen_t len = sizeof *local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(local), &len) < 0) return Fail("getsockname");
  len = sizeof *remote;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(remote), &len) < 0) return Fail("getpeername");
  if (local->sin_family != AF_INET) return Fail("getsockname", EAFNOSUPPORT, "IPv4 only");
  return {};
}

std::string FormatIpv4(const in_addr& addr) {
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, text, sizeof text);
  return text;
}

Napi::Object WindowToJs(Napi::Env env, const tcp_repair_window& w) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("sndWl1", w.snd_wl1);
  o.Set("sndWnd", w.snd_wnd);
  o.Set("maxWindow", w.max_window);
  o.Set("rcvWnd", w.rcv_wnd);
  o.Set("rcvWup", w.rcv_wup);
  return o;
}

/* tcpi_bytes_received (sequence space received in order, FIN included) is newer than glibc's
 * struct tcp_info, so it is read at its fixed offset in the kernel's (Linux >= 4.1). With it the
 * peer's ISN+1 is recvSeq - bytesReceived, whenever the dump is taken. */
SysError ReadBytesReceived(int fd, uint64_t* bytes) {
  constexpr size_t kOffset = 128;
  unsigned char raw[232] = {};
  socklen_t length = sizeof raw;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, raw, &length) < 0) return Fail("getsockopt", errno, "TCP_INFO");
  if (length < kOffset + sizeof *bytes) return Fail("getsockopt", ENOTSUP, "TCP_INFO too short for tcpi_bytes_received");
  memcpy(bytes, raw + kOffset, sizeof *bytes);
  return {};
}

/* rcv_nxt and tcpi_bytes_received come from separate calls, and a segment arriving between them
 * would put the peer's ISN off by its length. Both advance together under the socket lock, so
 * an unchanged byte count around the repair read proves that rcv_nxt belongs with it. */
SysError ReadConsistentReceiveState(int fd, SocketDump* state) {
  constexpr int kAttempts = 16;
  for (int attempt = 0; attempt < kAttempts; attempt++) {
    uint64_t before = 0, after = 0;
    if (SysError e = ReadBytesReceived(fd, &before)) return e;
    if (SysError e = ReadRepairState(fd, state)) return e;
    if (SysError e = ReadBytesReceived(fd, &after)) return e;
    if (before == after) {
      state->bytesReceived = after;
      return {};
    }
  }
  return Fail("getsockopt", EAGAIN, "data kept arriving while the receive state was read");
}

Napi::Value Dump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SocketDump dump;
  if (SysError e = DumpSocket(info[0].As<Napi::Number>().Int32Value(), &dump)) return ThrowNativeError(env, e);
  return DumpToJs(env, dump);
}

SysError SetRepairOptions(int fd, const RestoreSpec& s) {
  std::vector<tcp_repair_opt> opts{{TCPOPT_MAXSEG, s.mss}};
  if (s.windowScaling) opts.push_back({TCPOPT_WINDOW, s.sndWscale | (s.rcvWscale << 16)});
  if (s.sack) opts.push_back({TCPOPT_SACK_PERMITTED, 0});
  if (s.timestamps) opts.push_back({TCPOPT_TIMESTAMP, 0});
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts.data(),
                 opts.size() * sizeof(tcp_repair_opt)) < 0)
    return Fail("setsockopt", errno, "TCP_REPAIR_OPTIONS");
  return {};
}

SysError BuildRepairedSocket(int fd, const RestoreSpec& s) {
  const sockaddr* local = reinterpret_cast<const sockaddr*>(&s.local);
  const sockaddr* remote = reinterpret_cast<const sockaddr*>(&s.remote);
  if (SysError e = SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")) return e;
  // The mark rides on every segment the socket sends, its resets included: a netfilter rule can
  // tell them from the resets the stack sends for 4-tuples it has no socket for.
  if (s.mark != 0) {
    if (SysError e = SetInt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(s.mark), "SO_MARK")) return e;
  }
  if (SysError e = SetInt(fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON, "TCP_REPAIR=1")) return e;
  if (SysError e = WriteQueueSeq(fd, TCP_SEND_QUEUE, s.sendSeq)) return e;
  if (SysError e = WriteQueueSeq(fd, TCP_RECV_QUEUE, s.recvSeq)) return e;
  // connect() sizes the segments (mss_cache) from the MSS clamp then, and the repair option
  // set afterwards does not redo it: without this the socket sends 536-byte segments forever.
  // (The option refuses more than 32767, which only loopback's MTU exceeds.)
  constexpr uint32_t kMaxUserMss = 32767;
  if (SysError e = SetInt(fd, IPPROTO_TCP, TCP_MAXSEG, static_cast<int>(std::min(s.mss, kMaxUserMss)), "TCP_MAXSEG")) return e;
  if (bind(fd, local, sizeof s.local) < 0) return Fail("bind");
  if (connect(fd, remote, sizeof s.remote) < 0) return Fail("connect");
  if (SysError e = SetRepairOptions(fd, s)) return e;
  if (s.timestamps && setsockopt(fd, IPPROTO_TCP, TCP_TIMESTAMP, &s.timestamp, sizeof s.timestamp) < 0)
    return Fail("setsockopt", errno, "TCP_TIMESTAMP");
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &s.window, sizeof s.window) < 0)
    return Fail("setsockopt", errno, "TCP_REPAIR_WINDOW");
  if (SysError e = SetInt(fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF, "TCP_REPAIR=0")) return e;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return Fail("fcntl", errno, "O_NONBLOCK");
  return {};
}

/* restore(endpoints, base, answer): the connection `base` records, rebuilt at the client's
 * answered position with the clock read now (SpecFor, as probeMany's restoring targets). */
Napi::Value Restore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsObject() || !info[2].IsObject()) {
    Napi::TypeError::New(env, "restore expects (endpoints, base, answer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object endpoints = info[0].As<Napi::Object>(), answer = info[2].As<Napi::Object>();
  std::string localAddress, remoteAddress;
  uint32_t localPort, remotePort;
  RestoreBase base;
  ClientPosition at;
  if (!GetString(endpoints, "localAddress", &localAddress) || !GetUint32(endpoints, "localPort", &localPort) ||
      !GetString(endpoints, "remoteAddress", &remoteAddress) || !GetUint32(endpoints, "remotePort", &remotePort) ||
      !ReadRestoreBase(info[1].As<Napi::Object>(), &base) || !GetUint32(answer, "ack", &at.ack) ||
      !GetUint32(answer, "seq", &at.seq) || !GetUint32(answer, "window", &at.window))
    return env.Undefined();
  sockaddr_in local, remote;
  if (!ToSockaddr(localAddress, localPort, &local) || !ToSockaddr(remoteAddress, remotePort, &remote)) {
    Napi::TypeError::New(env, "restore: addresses must be IPv4 and ports 0..65535").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Fd sock;
  if (SysError e = RestoreSocket(SpecFor(base, local, remote, at, WallClockMs()), &sock)) return ThrowNativeError(env, e);
  return Napi::Number::New(env, sock.Release());
}

Napi::Value SetRepair(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool on = info[1].ToBoolean().Value();
  SysError e = SetInt(fd, IPPROTO_TCP, TCP_REPAIR, on ? TCP_REPAIR_ON : TCP_REPAIR_OFF,
                      on ? "TCP_REPAIR=1" : "TCP_REPAIR=0");
  return e ? ThrowNativeError(info.Env(), e) : info.Env().Undefined();
}

/* Whether this process may use TCP_REPAIR (needs CAP_NET_ADMIN in the network namespace):
 * returns null if usable, else the NativeError that says why not. */
Napi::Value RepairProblem(const Napi::CallbackInfo& info) {
  Fd sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SysError e = sock.valid() ? SetInt(sock.get(), IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON, "TCP_REPAIR=1")
                            : Fail("socket");
  return e ? Napi::Value(MakeNativeError(info.Env(), e).Value()) : info.Env().Null();
}

}  // namespace

double WallClockMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

RestoreSpec SpecFor(const RestoreBase& base, const sockaddr_in& local, const sockaddr_in& remote, const ClientPosition& at, double nowMs) {
  RestoreSpec s;
  s.local = local;
  s.remote = remote;
  s.sendSeq = at.ack;
  s.recvSeq = at.seq;
  s.mss = base.mss;
  s.windowScaling = base.windowScaling;
  s.sndWscale = base.sndWscale;
  s.rcvWscale = base.rcvWscale;
  s.sack = base.sack;
  s.timestamps = base.timestamps;
  // The old server's clock carried to now plus a margin (PAWS); even, so the kernel keeps ms units.
  const double elapsed = std::max(0.0, std::ceil(nowMs - base.clockReadAt));
  s.timestamp = static_cast<uint32_t>(base.timestamp + static_cast<uint64_t>(elapsed) + base.timestampMarginMs) & ~1u;
  s.mark = base.mark;
  const uint32_t sndWnd = at.window << (base.windowScaling ? base.sndWscale : 0);
  s.window = {at.seq, sndWnd, std::max(sndWnd, base.maxWindow), base.rcvWnd ? base.rcvWnd : kFallbackReceiveWindow, at.seq};
  return s;
}

bool ReadRestoreBase(const Napi::Object& o, RestoreBase* b) {
  Napi::Value clockReadAt = o.Get("clockReadAt");
  if (!clockReadAt.IsNumber()) {
    Napi::TypeError::New(o.Env(), "restore.clockReadAt must be a number").ThrowAsJavaScriptException();
    return false;
  }
  b->clockReadAt = clockReadAt.As<Napi::Number>().DoubleValue();
  return GetUint32(o, "mss", &b->mss) && GetBool(o, "windowScaling", &b->windowScaling) &&
         GetUint32(o, "sndWscale", &b->sndWscale) && GetUint32(o, "rcvWscale", &b->rcvWscale) && GetBool(o, "sack", &b->sack) &&
         GetBool(o, "timestamps", &b->timestamps) && GetUint32(o, "timestamp", &b->timestamp) &&
         GetUint32(o, "maxWindow", &b->maxWindow) && GetUint32(o, "rcvWnd", &b->rcvWnd) &&
         GetUint32(o, "timestampMarginMs", &b->timestampMarginMs) && GetUint32(o, "mark", &b->mark);
}

SysError RestoreSocket(const RestoreSpec& spec, Fd* out) {
  Fd sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Fail("socket");
  if (SysError e = BuildRepairedSocket(sock.get(), spec)) return e;
  *out = std::move(sock);
  return {};
}

SysError DumpSocket(int fd, SocketDump* out) {
  if (SysError e = ReadEndpoints(fd, &out->local, &out->remote)) return e;
  if (SysError e = GetOpt(fd, TCP_INFO, &out->info, "TCP_INFO")) return e;
  return ReadConsistentReceiveState(fd, out);
}

Napi::Object DumpToJs(Napi::Env env, const SocketDump& d) {
  const tcp_info& tcpInfo = d.info;
  bool timestamps = tcpInfo.tcpi_options & TCPI_OPT_TIMESTAMPS;
  Napi::Object o = Napi::Object::New(env);
  o.Set("localAddress", FormatIpv4(d.local.sin_addr));
  o.Set("localPort", ntohs(d.local.sin_port));
  o.Set("remoteAddress", FormatIpv4(d.remote.sin_addr));
  o.Set("remotePort", ntohs(d.remote.sin_port));
  o.Set("sendSeq", d.sendSeq);
  o.Set("recvSeq", d.recvSeq);
  o.Set("timestamp", d.timestamp);
  o.Set("clockReadAt", d.clockReadAt);
  // mss_cache excludes the timestamp option (12 bytes); the repair option wants the peer's MSS.
  o.Set("mss", tcpInfo.tcpi_snd_mss + (timestamps ? 12 : 0));
  o.Set("windowScaling", bool(tcpInfo.tcpi_options & TCPI_OPT_WSCALE));
  o.Set("sndWscale", tcpInfo.tcpi_snd_wscale);
  o.Set("rcvWscale", tcpInfo.tcpi_rcv_wscale);
  o.Set("sack", bool(tcpInfo.tcpi_options & TCPI_OPT_SACK));
  o.Set("timestamps", timestamps);
  o.Set("window", WindowToJs(env, d.window));
  o.Set("bytesReceived", static_cast<double>(d.bytesReceived));
  return o;
}

void InitRepair(Napi::Env env, Napi::Object exports) {
  exports.Set("dump", Napi::Function::New(env, Dump));
  exports.Set("restore", Napi::Function::New(env, Restore));
  exports.Set("setRepair", Napi::Function::New(env, SetRepair));
  exports.Set("repairProblem", Napi::Function::New(env, RepairProblem));
}

}  // namespace wedge
