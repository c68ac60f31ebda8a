/*
 * Theory of operation: the entry point of the native helper (wedge_native.node).
 *
 * Goal: give the TypeScript layer (native/index.ts and its parts) the Linux mechanisms Node lacks: TCP_REPAIR
 * dump/restore (repair.cc), the client ACK probe over raw + AF_PACKET sockets (probe.cc),
 * in-kernel splice relaying on one epoll thread (splice.cc), address announcement (addr.cc) and
 * TCP Migrate's raw segments and Migrate SYN capture (migrate.cc).
 *
 * Data flow: JS calls plain functions with plain objects; each failure comes back as the JS
 * NativeError class that native/addon.ts registers at load through setErrorClass(), carrying the
 * syscall name, errno and its symbolic code. The one piece of policy here is the restore's
 * (which sequences, clock and window a rebuilt socket gets: repair.cc SpecFor), so that the
 * synchronous restore and the probe worker's cannot drift apart; otherwise this layer performs
 * system calls and reports exactly what the kernel said.
 *
 * Limits: IPv4 only for probes and ARP; Linux only.
 */
#include <cstring>

#include "common.h"

namespace wedge {

Napi::Error MakeNativeError(Napi::Env env, const SysError& e) {
  const char* code = strerrorname_np(e.err);
  std::string message = std::string(e.syscall) + " failed: " + strerror(e.err) + " (" +
                        (code ? code : "E?") + ")";
  if (!e.detail.empty()) message += ": " + e.detail;
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data == nullptr || data->errorClass.IsEmpty()) return Napi::Error::New(env, message);
  Napi::Object error = data->errorClass.New({Napi::String::New(env, message),
                                             Napi::String::New(env, e.syscall),
                                             Napi::Number::New(env, e.err),
                                             Napi::String::New(env, code ? code : "")});
  return Napi::Error(env, error);
}

Napi::Value ThrowNativeError(Napi::Env env, const SysError& e) {
  MakeNativeError(env, e).ThrowAsJavaScriptException();
  return env.Undefined();
}

static bool MissingProperty(const Napi::Object& obj, const char* key, const char* type) {
  Napi::TypeError::New(obj.Env(), std::string("expected ") + type + " property '" + key + "'")
      .ThrowAsJavaScriptException();
  return false;
}

bool GetUint32(const Napi::Object& obj, const char* key, uint32_t* out) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) return MissingProperty(obj, key, "a number");
  *out = v.As<Napi::Number>().Uint32Value();
  return true;
}

bool GetString(const Napi::Object& obj, const char* key, std::string* out) {
  Napi::Value v = obj.Get(key);
  if (!v.IsString()) return MissingProperty(obj, key, "a string");
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

bool GetBool(const Napi::Object& obj, const char* key, bool* out) {
  Napi::Value v = obj.Get(key);
  if (!v.IsBoolean()) return MissingProperty(obj, key, "a boolean");
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

bool GetObject(const Napi::Object& obj, const char* key, Napi::Object* out) {
  Napi::Value v = obj.Get(key);
  if (!v.IsObject()) return MissingProperty(obj, key, "an object");
  *out = v.As<Napi::Object>();
  return true;
}

static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(info.Env(), "setErrorClass expects a constructor")
        .ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  info.Env().GetInstanceData<AddonData>()->errorClass =
      Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  InitRepair(env, exports);
  InitProbe(env, exports);
  InitAddr(env, exports);
  InitSplice(env, exports);
  InitMigrate(env, exports);
  InitLimits(env, exports);
  InitHandover(env, exports);
  InitNotify(env, exports);
  InitProgress(env, exports);
  return exports;
}

}  // namespace wedge

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return wedge::Init(env, exports); }

NODE_API_MODULE(wedge_native, InitAddon)
