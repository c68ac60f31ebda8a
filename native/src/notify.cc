/*
 * systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram of
 * "KEY=VALUE\n..." lines to the unix socket named by $NOTIFY_SOCKET (a leading '@' is the
 * abstract namespace). Nothing when the variable is unset (not started by systemd). The socket is
 * non-blocking: a notification is never worth a stalled event loop.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "common.h"

namespace wedge {

namespace {

/* notifySystemd(state) -> true if sent, false without $NOTIFY_SOCKET. */
Napi::Value NotifySystemd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string state = info[0].As<Napi::String>().Utf8Value();
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return Napi::Boolean::New(env, false);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const size_t length = strlen(path);
  if (length >= sizeof(address.sun_path)) return ThrowNativeError(env, Fail("connect", ENAMETOOLONG, "NOTIFY_SOCKET"));
  memcpy(address.sun_path, path, length);
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';
  Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return ThrowNativeError(env, Fail("socket", errno, "AF_UNIX for NOTIFY_SOCKET"));
  const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  if (sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&address), size) < 0) {
    return ThrowNativeError(env, Fail("sendto", errno, "NOTIFY_SOCKET"));
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("notifySystemd", Napi::Function::New(env, NotifySystemd));
}

}  // namespace wedge
