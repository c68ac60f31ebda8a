/*
 * Shared plumbing of the native helper: how a failed system call becomes a JS NativeError, an
 * owning file descriptor, and the per-addon-instance data. Every mechanism file (repair.cc,
 * probe.cc, splice.cc, addr.cc) reports failures as a SysError {syscall, errno}; only this file
 * knows how to turn one into a JS value (the NativeError class registered by native/addon.ts).
 */
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <unistd.h>

namespace wedge {

/* A failed system call. Empty (syscall == nullptr) means success. */
struct SysError {
  const char* syscall = nullptr;
  int err = 0;
  std::string detail;

  explicit operator bool() const { return syscall != nullptr; }
};

inline SysError Fail(const char* syscall, int err = errno, std::string detail = "") {
  return SysError{syscall, err, std::move(detail)};
}

/* Owns one file descriptor; closes it on destruction unless released. */
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept {
    Reset(other.Release());
    return *this;
  }
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/* An IPv4 socket address from dotted-quad text; false if `address` is not IPv4. */
inline bool ToSockaddr(const std::string& address, uint32_t port, sockaddr_in* out) {
  *out = sockaddr_in{};
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(port));
  return port <= 0xFFFF && inet_pton(AF_INET, address.c_str(), &out->sin_addr) == 1;
}

class SpliceEngine;

/* Per addon instance (one per Node environment / worker). */
struct AddonData {
  Napi::FunctionReference errorClass;
  SpliceEngine* splice = nullptr;
};

/* The NativeError for `e` (an Error if the class is not registered yet). */
Napi::Error MakeNativeError(Napi::Env env, const SysError& e);

/* Throws `e` as a JS exception; returns undefined for the caller to return. */
Napi::Value ThrowNativeError(Napi::Env env, const SysError& e);

/* Argument helpers: they throw a TypeError and return false on a bad argument. */
bool GetUint32(const Napi::Object& obj, const char* key, uint32_t* out);
bool GetString(const Napi::Object& obj, const char* key, std::string* out);
bool GetBool(const Napi::Object& obj, const char* key, bool* out);
bool GetObject(const Napi::Object& obj, const char* key, Napi::Object* out);

void InitRepair(Napi::Env env, Napi::Object exports);
void InitProbe(Napi::Env env, Napi::Object exports);
void InitAddr(Napi::Env env, Napi::Object exports);
void InitSplice(Napi::Env env, Napi::Object exports);
void InitMigrate(Napi::Env env, Napi::Object exports);
void InitLimits(Napi::Env env, Napi::Object exports);
void InitHandover(Napi::Env env, Napi::Object exports);
void InitNotify(Napi::Env env, Napi::Object exports);
void InitProgress(Napi::Env env, Napi::Object exports);

/* The Internet checksum (RFC 1071) of raw segments built by hand: add 16-bit words, then fold. */
inline uint32_t SumWords(const uint8_t* data, size_t len, uint32_t sum) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (len & 1) sum += data[len - 1] << 8;
  return sum;
}

inline uint16_t FoldChecksum(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

/* An AF_PACKET socket for IPv4 packets that pass `code` (classic BPF), on `ifname` or on all
 * interfaces when it is empty (capture.cc). */
SysError OpenIpv4Capture(const std::vector<sock_filter>& code, const std::string& ifname, Fd* out);

/* Closes such a socket on a thread of its own: closing a packet socket waits for an RCU grace
 * period (tens of ms on a busy host) that the caller need not wait for. */
void CloseCaptureLater(Fd capture);

}  // namespace wedge
