/*
 * Packet capture shared by the probe (the client's answer) and the TCP Migrate agent (Migrate
 * SYNs): an AF_PACKET socket that sees IPv4 packets only, filtered in the kernel by a classic BPF
 * program, bound to one interface or to all. Reading and parsing stay with each caller.
 */
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>

#include "common.h"

namespace wedge {

SysError OpenIpv4Capture(const std::vector<sock_filter>& code, const std::string& ifname, Fd* out) {
  Fd sock(socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP)));
  if (!sock.valid()) return Fail("socket", errno, "AF_PACKET capture");
  sock_fprog prog{static_cast<unsigned short>(code.size()), const_cast<sock_filter*>(code.data())};
  if (setsockopt(sock.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return Fail("setsockopt", errno, "SO_ATTACH_FILTER");
  sockaddr_ll where{};
  where.sll_family = AF_PACKET;
  where.sll_protocol = htons(ETH_P_IP);
  if (!ifname.empty()) {
    where.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (where.sll_ifindex == 0) return Fail("if_nametoindex", errno, ifname);
  }
  if (bind(sock.get(), reinterpret_cast<sockaddr*>(&where), sizeof where) < 0) return Fail("bind", errno, "AF_PACKET capture");
  *out = std::move(sock);
  return {};
}

}  // namespace wedge
