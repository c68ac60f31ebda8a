/*
 * The TCP Migrate agent's segment captures (capture.cc): one thread per capture delivers each
 * matching TCP segment to a JS callback. migrate.cc says which segments (a BPF filter and the same
 * test again in code); capture.cc owns the socket, the thread and the delivery.
 */
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include <linux/filter.h>

#include "common.h"

namespace wedge {

/* One captured TCP segment, copied out of the packet for the JS thread (or the failure that
 * ended the capture, in `error`). Addresses in network order. */
struct CapturedSegment {
  uint32_t saddr = 0, daddr = 0, seq = 0, ack = 0;
  uint16_t sport = 0, dport = 0, window = 0;
  uint8_t flags = 0;
  int ifindex = 0;
  std::vector<uint8_t> options;
  SysError error;
};

/* Re-checks in code what the capture's BPF filter promised; false to ignore the segment. */
using SegmentCheck = std::function<bool(const CapturedSegment&)>;

/* Starts capturing IPv4/TCP segments to `address` (network order) that pass `filter` in the
 * kernel and `check` in code, on `ifname` (empty: all); each goes to onSegment(error, segment) on
 * the JS thread. Returns the JS handle {stop(), dropped()}, or throws a NativeError (EPERM
 * without CAP_NET_RAW). `name` appears in error details. */
Napi::Value StartSegmentCapture(Napi::Env env, const std::vector<sock_filter>& filter, const std::string& ifname, uint32_t address,
                                SegmentCheck check, Napi::Function onSegment, const char* name);

}  // namespace wedge
