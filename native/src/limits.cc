/*
 * The process's descriptor limit. Every client connection holds two descriptors (client and
 * origin) and four more while the kernel splices its body (two dups and a pipe), so the soft
 * limit a shell hands out (often 1024) caps a server at a few hundred connections. At start-up
 * the daemon raises the soft limit to the hard one; it reports both.
 */
#include <sys/resource.h>

#include "common.h"

namespace wedge {

namespace {

Napi::Value RaiseOpenFileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) < 0) return ThrowNativeError(env, Fail("getrlimit", errno, "RLIMIT_NOFILE"));
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised{limit.rlim_max, limit.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("soft", static_cast<double>(limit.rlim_cur));
  o.Set("hard", static_cast<double>(limit.rlim_max));
  return o;
}

}  // namespace

void InitLimits(Napi::Env env, Napi::Object exports) {
  exports.Set("raiseOpenFileLimit", Napi::Function::New(env, RaiseOpenFileLimit));
}

}  // namespace wedge
