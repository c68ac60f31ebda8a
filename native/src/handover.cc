/*
 * In-place upgrade: the new wedge process takes its predecessor's sockets (the listener and every
 * client connection) as they are, with pidfd_getfd(2) (Linux 5.6): a duplicate of the other
 * process's descriptor, so the kernel socket, its queues and its TCP state never change. The old
 * process names the descriptors over the handover socket and lets go of them only afterwards.
 * Needs the right to ptrace the old process (root, or the same user where Yama allows it).
 */
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

namespace wedge {

namespace {

/* takeFd(pid, fd) -> a new descriptor here for the other process's `fd` (close-on-exec). */
Napi::Value TakeFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto pid = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  const int fd = info[1].As<Napi::Number>().Int32Value();
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return ThrowNativeError(env, Fail("pidfd_open", errno, "of the old wedge process"));
  const int taken = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  const int error = errno;
  close(pidfd);
  if (taken < 0) return ThrowNativeError(env, Fail("pidfd_getfd", error, "a descriptor of the old wedge process"));
  return Napi::Number::New(env, taken);
}

}  // namespace

void InitHandover(Napi::Env env, Napi::Object exports) {
  exports.Set("takeFd", Napi::Function::New(env, TakeFd));
}

}  // namespace wedge
