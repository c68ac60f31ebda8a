/*
 * Whether a live connection makes progress: one getsockopt(TCP_INFO) and one ioctl(SIOCOUTQ), no
 * repair mode, never blocks. In: a TCP socket's fd. Out: the counters the watchdog
 * (takeover/watchdog.ts) compares from one pass to the next: bytes the peer acknowledged, bytes
 * sent and not yet acknowledged, bytes queued and not yet sent, the peer's window.
 */
#include <linux/sockios.h>
#include <linux/tcp.h>  // the kernel's tcp_info: glibc's lacks the byte counters
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>

#include "common.h"

namespace wedge {
namespace {

Napi::Value Progress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    Napi::TypeError::New(env, "progress expects a file descriptor").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  tcp_info tcpInfo{};
  socklen_t length = sizeof tcpInfo;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &tcpInfo, &length) < 0) return ThrowNativeError(env, Fail("getsockopt", errno, "TCP_INFO"));
  int queued = 0;  // write_seq - snd_una: sent and unacknowledged, plus not yet sent
  if (ioctl(fd, SIOCOUTQ, &queued) < 0) return ThrowNativeError(env, Fail("ioctl", errno, "SIOCOUTQ"));
  Napi::Object o = Napi::Object::New(env);
  constexpr uint8_t kEstablished = 1, kCloseWait = 8;  // include/net/tcp_states.h
  o.Set("established", tcpInfo.tcpi_state == kEstablished || tcpInfo.tcpi_state == kCloseWait);
  o.Set("bytesAcked", static_cast<double>(tcpInfo.tcpi_bytes_acked));
  o.Set("inFlight", std::max(0, queued - static_cast<int>(tcpInfo.tcpi_notsent_bytes)));
  o.Set("notSent", tcpInfo.tcpi_notsent_bytes);
  o.Set("peerWindow", tcpInfo.tcpi_snd_wnd);
  o.Set("retransmits", tcpInfo.tcpi_retransmits);
  return o;
}

}  // namespace

void InitProgress(Napi::Env env, Napi::Object exports) {
  exports.Set("progress", Napi::Function::New(env, Progress));
}

}  // namespace wedge
