#include "domain_check/src/dns_client.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace domain_check {

struct DnsClient::Channel {
  ares_channel channel = nullptr;
};

struct DnsClient::Reply {
  bool done = false;
  int status = ARES_ECANCELLED;
  std::vector<unsigned char> abuf;
  bool timed_out = false;
  bool cancelled = false;
};

const char* outcome_name(DnsOutcome o) {
  switch (o) {
    case DnsOutcome::kDelegated:
      return "delegated";
    case DnsOutcome::kExistsNoNs:
      return "exists_without_ns";
    case DnsOutcome::kNxDomain:
      return "NXDOMAIN";
    case DnsOutcome::kServFail:
      return "SERVFAIL";
    case DnsOutcome::kRefused:
      return "REFUSED";
    case DnsOutcome::kTimeout:
      return "timeout";
    case DnsOutcome::kUnreachable:
      return "resolver unreachable";
    case DnsOutcome::kCancelled:
      return "cancelled";
    case DnsOutcome::kError:
      return "DNS error";
  }
  return "?";
}

DnsClient::DnsClient(const DnsOptions& opts) : ch_(new Channel), opts_(opts) {
  ares_options o{};
  int mask = 0;
  // No search list, no HOSTALIASES: the name asked is the name queried. NOCHECKRESP: a
  // SERVFAIL/REFUSED answer is reported as such (c-ares would otherwise skip the server and
  // end with a misleading "connection refused" once every server was skipped).
  o.flags = ARES_FLAG_NOALIASES | ARES_FLAG_NOSEARCH | ARES_FLAG_NOCHECKRESP;
  mask |= ARES_OPT_FLAGS;
  int total_ms = std::max(1, static_cast<int>(opts.timeout_s * 1000));
  o.timeout = std::max(1, total_ms / std::max(1, opts.tries));  // per try; drive() caps the sum
  mask |= ARES_OPT_TIMEOUTMS;
  o.tries = std::max(1, opts.tries);
  mask |= ARES_OPT_TRIES;
  o.ndomains = 0;
  o.domains = nullptr;
  mask |= ARES_OPT_DOMAINS;
  int rc = ares_init_options(&ch_->channel, &o, mask);
  if (rc != ARES_SUCCESS) {
    delete ch_;
    throw std::runtime_error(std::string("c-ares init failed: ") + ares_strerror(rc));
  }
  if (!opts.servers_csv.empty()) {
    rc = ares_set_servers_ports_csv(ch_->channel, opts.servers_csv.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(ch_->channel);
      delete ch_;
      throw std::runtime_error("c-ares rejected resolver list \"" + opts.servers_csv +
                               "\": " + ares_strerror(rc));
    }
  }
}

DnsClient::~DnsClient() {
  ares_destroy(ch_->channel);
  delete ch_;
}

void DnsClient::drive(const bool& done, Clock::time_point deadline, const CancelFn& cancelled,
                      bool& timed_out, bool& was_cancelled) {
  while (!done) {
    auto now = Clock::now();
    if (now >= deadline || (cancelled && cancelled())) {
      (now >= deadline ? timed_out : was_cancelled) = true;
      ares_cancel(ch_->channel);  // runs the pending callbacks with ARES_ECANCELLED
      return;
    }
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    int bits = ares_getsock(ch_->channel, socks, ARES_GETSOCK_MAXNUM);
    pollfd fds[ARES_GETSOCK_MAXNUM];
    nfds_t n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short ev = 0;
      if (ARES_GETSOCK_READABLE(bits, i)) ev |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(bits, i)) ev |= POLLOUT;
      if (ev == 0) continue;
      fds[n].fd = socks[i];
      fds[n].events = ev;
      fds[n].revents = 0;
      ++n;
    }
    // Wake for c-ares' own retry timer, the deadline, or a cancellation check (100 ms).
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now);
    left = std::min(left, std::chrono::microseconds(100000));
    timeval maxtv{static_cast<time_t>(left.count() / 1000000),
                  static_cast<suseconds_t>(left.count() % 1000000)};
    timeval tv{};
    timeval* tvp = ares_timeout(ch_->channel, &maxtv, &tv);
    int ms = static_cast<int>(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
    int ready = poll(fds, n, ms);
    if (ready <= 0) {
      ares_process_fd(ch_->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timers only
      continue;
    }
    for (nfds_t i = 0; i < n; ++i) {
      bool r = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
      bool w = (fds[i].revents & (POLLOUT | POLLERR | POLLHUP)) != 0;
      if (!r && !w) continue;
      ares_process_fd(ch_->channel, r ? fds[i].fd : ARES_SOCKET_BAD,
                      w ? fds[i].fd : ARES_SOCKET_BAD);
    }
  }
}

DnsClient::Reply DnsClient::query(const std::string& name, int type, Clock::time_point deadline,
                                  const CancelFn& cancelled) {
  Reply reply;
  auto cb = [](void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    auto* r = static_cast<Reply*>(arg);
    r->status = status;
    if (abuf != nullptr && alen > 0) r->abuf.assign(abuf, abuf + alen);
    r->done = true;
  };
  ares_query(ch_->channel, name.c_str(), 1 /* C_IN */, type, cb, &reply);
  drive(reply.done, deadline, cancelled, reply.timed_out, reply.cancelled);
  return reply;
}

namespace {

DnsResult failure(int status, bool timed_out, bool cancelled) {
  DnsResult r;
  r.detail = ares_strerror(status);
  if (cancelled) {
    r.outcome = DnsOutcome::kCancelled;
  } else if (timed_out || status == ARES_ETIMEOUT) {
    r.outcome = DnsOutcome::kTimeout;
  } else if (status == ARES_ESERVFAIL) {
    r.outcome = DnsOutcome::kServFail;
  } else if (status == ARES_EREFUSED) {
    r.outcome = DnsOutcome::kRefused;
  } else if (status == ARES_ECONNREFUSED) {
    r.outcome = DnsOutcome::kUnreachable;
  } else {
    r.outcome = DnsOutcome::kError;
  }
  return r;
}

}  // namespace

DnsResult DnsClient::lookup(const std::string& name, const CancelFn& cancelled) {
  auto deadline =
      Clock::now() + std::chrono::microseconds(static_cast<int64_t>(opts_.timeout_s * 1e6));
  Reply ns = query(name, 2 /* T_NS */, deadline, cancelled);
  DnsResult r;
  r.queries = 1;
  if (ns.status == ARES_SUCCESS) {
    hostent* host = nullptr;
    int prc = ares_parse_ns_reply(ns.abuf.data(), static_cast<int>(ns.abuf.size()), &host);
    if (prc == ARES_SUCCESS && host != nullptr) {
      for (char** a = host->h_aliases; a != nullptr && *a != nullptr; ++a) r.ns.emplace_back(*a);
      ares_free_hostent(host);
    }
    if (!r.ns.empty()) {
      r.outcome = DnsOutcome::kDelegated;
      return r;
    }
    if (prc != ARES_SUCCESS && prc != ARES_ENODATA) {
      r.outcome = DnsOutcome::kError;
      r.detail = std::string("unparsable NS answer: ") + ares_strerror(prc);
      return r;
    }
    // An answer without NS records (a CNAME, say): treat like NODATA below.
  } else if (ns.status == ARES_ENOTFOUND) {
    r.outcome = DnsOutcome::kNxDomain;
    return r;
  } else if (ns.status != ARES_ENODATA) {
    DnsResult f = failure(ns.status, ns.timed_out, ns.cancelled);
    f.queries = 1;
    return f;
  }
  // The name exists but has no NS: a zone apex still has an SOA at the name.
  Reply soa = query(name, 6 /* T_SOA */, deadline, cancelled);
  r.queries = 2;
  if (soa.status == ARES_SUCCESS) {
    ares_soa_reply* s = nullptr;
    if (ares_parse_soa_reply(soa.abuf.data(), static_cast<int>(soa.abuf.size()), &s) ==
            ARES_SUCCESS &&
        s != nullptr) {
      r.soa = s->nsname ? s->nsname : "";
      ares_free_data(s);
      r.outcome = DnsOutcome::kDelegated;
      return r;
    }
    r.outcome = DnsOutcome::kExistsNoNs;
    return r;
  }
  if (soa.status == ARES_ENODATA) {
    r.outcome = DnsOutcome::kExistsNoNs;
    return r;
  }
  if (soa.status == ARES_ENOTFOUND) {  // vanished between the two queries
    r.outcome = DnsOutcome::kNxDomain;
    return r;
  }
  DnsResult f = failure(soa.status, soa.timed_out, soa.cancelled);
  f.queries = 2;
  return f;
}

ResolvedHost DnsClient::resolve(const std::string& host, uint16_t port, const CancelFn& cancelled) {
  ResolvedHost out;
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.addrs.push_back(ss);
    out.lens.push_back(sizeof(sockaddr_in));
    return out;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.addrs.push_back(ss);
    out.lens.push_back(sizeof(sockaddr_in6));
    return out;
  }
  struct State {
    bool done = false;
    int status = ARES_ECANCELLED;
    ResolvedHost* out;
  } st{false, ARES_ECANCELLED, &out};
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = ARES_AI_NUMERICSERV;
  std::string service = std::to_string(port);
  auto cb = [](void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
    auto* s = static_cast<State*>(arg);
    s->status = status;
    if (status == ARES_SUCCESS && res != nullptr) {
      for (ares_addrinfo_node* n = res->nodes; n != nullptr; n = n->ai_next) {
        sockaddr_storage a{};
        socklen_t len = std::min<socklen_t>(n->ai_addrlen, sizeof a);
        std::memcpy(&a, n->ai_addr, len);
        s->out->addrs.push_back(a);
        s->out->lens.push_back(len);
      }
    }
    if (res != nullptr) ares_freeaddrinfo(res);
    s->done = true;
  };
  ares_getaddrinfo(ch_->channel, host.c_str(), service.c_str(), &hints, cb, &st);
  bool timed_out = false, was_cancelled = false;
  auto deadline =
      Clock::now() + std::chrono::microseconds(static_cast<int64_t>(opts_.timeout_s * 1e6));
  drive(st.done, deadline, cancelled, timed_out, was_cancelled);
  if (out.addrs.empty()) {
    out.error = timed_out ? std::string("timeout") : std::string(ares_strerror(st.status));
  }
  return out;
}

}  // namespace domain_check
