/*
 * Theory of operation: the splice engine, moving bytes between sockets inside the kernel.
 *
 * Goal: relay a response body from one socket to another without copying it through user
 * space, for hundreds of concurrent transfers, with exact byte counts.
 *
 * Threads: ONE engine thread per addon instance owns an epoll set and every running job. The JS
 * thread only (a) prepares a job (dups both fds, makes a pipe) and queues a start command,
 * (b) queues cancel commands, (c) reads a job's live byte counter (an atomic). Commands wake the
 * engine through an eventfd. Completions go back to JS through one ThreadSafeFunction, which is
 * referenced (keeps Node alive) only while jobs run.
 *
 * Per job:   source socket --splice--> pipe --splice--> destination socket
 * Both sockets are registered edge-triggered (source: EPOLLIN|EPOLLRDHUP, destination:
 * EPOLLOUT). pump() moves bytes until neither side progresses: an empty pipe plus EAGAIN from
 * the source means "wait for input", a non-empty pipe plus EAGAIN from the destination means
 * "wait for room" (a slow client). EAGAIN from the source while the pipe holds bytes may mean a
 * full pipe, so the source is retried whenever the destination made progress. A pump turn is
 * bounded (kTurnBytes) so one fast pair cannot starve the others; a job that still has work
 * goes back on the ready list.
 *
 * Ends: `length` bytes delivered (eof=false), or the source reached EOF or failed first
 * (eof=true, with the count: a dead origin is a short body to resume, not an error), or cancel (bytes still in the pipe are dropped; the count says what the
 * destination got), or a failed syscall (the job's error names it and its errno; a destination
 * that epoll reports failed or hung up while there was nothing to write is 'epoll_wait').
 *
 * Ownership: the engine works on its own dup()s of the caller's fds and never closes the
 * caller's. A socket destroyed by Node stays open until its job ends. The caller must not read
 * the source or write the destination while a job runs.
 */
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace wedge {
namespace {

constexpr int kPipeSize = 1 << 20;
constexpr uint64_t kTurnBytes = 4 << 20;
constexpr uint64_t kWakeKey = 0;  // epoll key of the command eventfd; job ids start at 1
constexpr uint64_t kDestinationSide = 1ull << 32;  // epoll key: job id, plus this for the destination

using Counter = std::shared_ptr<std::atomic<uint64_t>>;

struct Job {
  uint32_t id = 0;
  Fd source, destination, pipeOut, pipeIn;  // pipeOut: read end, pipeIn: write end
  int64_t remaining = -1;                   // bytes still to take from the source; -1: until EOF
  size_t pipeCapacity = 0, inPipe = 0;
  bool sourceEof = false;
  Counter moved;
};

struct Completion {
  uint32_t id = 0;
  uint64_t bytes = 0;
  bool eof = false, cancelled = false;
  SysError error;
};

struct Command {
  enum Kind { kStart, kCancel, kStop } kind;
  std::unique_ptr<Job> job;
  uint32_t id = 0;
};

enum class Turn { kWaiting, kMore, kDone };

}  // namespace

class SpliceEngine {
 public:
  explicit SpliceEngine(Napi::Env env);
  ~SpliceEngine();

  SysError Start(Napi::Env env, int source, int destination, int64_t length, Napi::Function onDone, uint32_t* id);
  void Cancel(uint32_t id) { Send(Command{Command::kCancel, nullptr, id}); }
  bool Bytes(uint32_t id, uint64_t* bytes) const;

 private:
  struct Waiter {
    Napi::FunctionReference onDone;
    Counter moved;
  };

  // JS thread
  void Send(Command command);
  static void Deliver(Napi::Env env, Napi::Function, Completion* completion);

  // engine thread
  void Run();
  void TakeCommands(bool* stop);
  void Adopt(std::unique_ptr<Job> job);
  void OnEvent(uint64_t key, uint32_t events);
  Turn Pump(Job& job, SysError* error);
  void Finish(uint32_t id, bool cancelled, SysError error);

  Fd epoll_, wake_;
  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Command> commands_;            // guarded by mutex_
  std::unordered_map<uint32_t, Waiter> waiters_;  // JS thread only
  size_t running_ = 0;                       // JS thread only: tsfn is referenced while > 0
  uint32_t nextId_ = 1;                      // JS thread only
  std::unordered_map<uint32_t, std::unique_ptr<Job>> jobs_;  // engine thread only
  std::vector<uint32_t> ready_;              // engine thread only
};

SpliceEngine::SpliceEngine(Napi::Env env)
    : epoll_(epoll_create1(EPOLL_CLOEXEC)), wake_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeKey;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                        "wedge:splice", 0, 1);
  tsfn_.Unref(env);
  thread_ = std::thread([this] { Run(); });
}

SpliceEngine::~SpliceEngine() {
  Send(Command{Command::kStop, nullptr, 0});
  thread_.join();
  tsfn_.Abort();
}

void SpliceEngine::Send(Command command) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands_.push_back(std::move(command));
  }
  uint64_t one = 1;
  ssize_t ignored = write(wake_.get(), &one, sizeof one);  // cannot fail short of a full counter
  (void)ignored;
}

static SysError DupNonBlocking(int fd, Fd* out, const char* which) {
  Fd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid()) return Fail("fcntl", errno, std::string("F_DUPFD_CLOEXEC ") + which);
  int flags = fcntl(copy.get(), F_GETFL);
  if (flags < 0 || fcntl(copy.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return Fail("fcntl", errno, std::string("O_NONBLOCK ") + which);
  *out = std::move(copy);
  return {};
}

static SysError PrepareJob(int source, int destination, int64_t length, Job* job) {
  if (SysError e = DupNonBlocking(source, &job->source, "source")) return e;
  if (SysError e = DupNonBlocking(destination, &job->destination, "destination")) return e;
  int ends[2];
  if (pipe2(ends, O_NONBLOCK | O_CLOEXEC) < 0) return Fail("pipe2");
  job->pipeOut.Reset(ends[0]);
  job->pipeIn.Reset(ends[1]);
  fcntl(ends[1], F_SETPIPE_SZ, kPipeSize);  // best effort: a smaller pipe only costs syscalls
  int capacity = fcntl(ends[1], F_GETPIPE_SZ);
  if (capacity < 0) return Fail("fcntl", errno, "F_GETPIPE_SZ");
  job->pipeCapacity = static_cast<size_t>(capacity);
  job->remaining = length;
  job->moved = std::make_shared<std::atomic<uint64_t>>(0);
  return {};
}

SysError SpliceEngine::Start(Napi::Env env, int source, int destination, int64_t length,
                             Napi::Function onDone, uint32_t* id) {
  auto job = std::make_unique<Job>();
  if (SysError e = PrepareJob(source, destination, length, job.get())) return e;
  job->id = *id = nextId_++;
  if (nextId_ == kWakeKey) nextId_ = 1;
  waiters_[job->id] = Waiter{Napi::Persistent(onDone), job->moved};
  if (running_++ == 0) tsfn_.Ref(env);
  Send(Command{Command::kStart, std::move(job), 0});
  return {};
}

bool SpliceEngine::Bytes(uint32_t id, uint64_t* bytes) const {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return false;
  *bytes = it->second.moved->load(std::memory_order_relaxed);
  return true;
}

void SpliceEngine::Deliver(Napi::Env env, Napi::Function, Completion* raw) {
  std::unique_ptr<Completion> c(raw);
  SpliceEngine* engine = env.GetInstanceData<AddonData>()->splice;
  auto it = engine->waiters_.find(c->id);
  if (it == engine->waiters_.end()) return;
  Napi::FunctionReference onDone = std::move(it->second.onDone);
  engine->waiters_.erase(it);
  if (--engine->running_ == 0) engine->tsfn_.Unref(env);
  Napi::Value error = c->error ? Napi::Value(MakeNativeError(env, c->error).Value()) : env.Null();
  onDone.Call({error, Napi::Number::New(env, static_cast<double>(c->bytes)), Napi::Boolean::New(env, c->eof),
               Napi::Boolean::New(env, c->cancelled)});
}

void SpliceEngine::Run() {
  std::vector<epoll_event> events(256);
  bool stop = false;
  while (!stop) {
    int timeout = ready_.empty() ? -1 : 0;
    int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
    for (int i = 0; i < n; i++) {
      if (events[i].data.u64 == kWakeKey) TakeCommands(&stop);
      else OnEvent(events[i].data.u64, events[i].events);
    }
    std::vector<uint32_t> turn;
    turn.swap(ready_);
    std::sort(turn.begin(), turn.end());
    turn.erase(std::unique(turn.begin(), turn.end()), turn.end());
    for (uint32_t id : turn) {
      auto it = jobs_.find(id);
      if (it == jobs_.end()) continue;
      SysError error;
      switch (Pump(*it->second, &error)) {
        case Turn::kMore: ready_.push_back(id); break;
        case Turn::kDone: Finish(id, false, std::move(error)); break;
        case Turn::kWaiting: break;
      }
    }
  }
}

/* A job's socket is ready. A failed or hung-up destination ends the job even while the source
 * is idle (with nothing to write, no splice call would notice). The errno is the socket's
 * pending error, or EPIPE when someone (Node's own read) already collected it. */
void SpliceEngine::OnEvent(uint64_t key, uint32_t events) {
  uint32_t id = static_cast<uint32_t>(key);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  if ((key & kDestinationSide) && (events & (EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(it->second->destination.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    return Finish(id, false, Fail("epoll_wait", err ? err : EPIPE, "the destination socket failed"));
  }
  ready_.push_back(id);
}

void SpliceEngine::TakeCommands(bool* stop) {
  uint64_t count;
  ssize_t ignored = read(wake_.get(), &count, sizeof count);
  (void)ignored;
  std::vector<Command> commands;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands.swap(commands_);
  }
  for (Command& c : commands) {
    switch (c.kind) {
      case Command::kStart: Adopt(std::move(c.job)); break;
      case Command::kCancel:
        if (jobs_.count(c.id)) Finish(c.id, true, {});
        break;
      case Command::kStop: *stop = true; break;
    }
  }
}

void SpliceEngine::Adopt(std::unique_ptr<Job> job) {
  uint32_t id = job->id;
  epoll_event in{}, out{};
  in.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  in.data.u64 = id;
  out.events = EPOLLOUT | EPOLLET;
  out.data.u64 = id | kDestinationSide;
  bool failed = epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, job->source.get(), &in) < 0 ||
                epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, job->destination.get(), &out) < 0;
  SysError error = failed ? Fail("epoll_ctl") : SysError{};
  jobs_[id] = std::move(job);
  if (failed) Finish(id, false, std::move(error));
  else ready_.push_back(id);
}

/* Moves bytes until both sides block, the job ends or the turn's budget is spent.
 * Return: kWaiting (blocked, epoll will call again), kMore (budget spent), kDone (see error). */
Turn SpliceEngine::Pump(Job& job, SysError* error) {
  uint64_t budget = kTurnBytes;
  for (;;) {
    bool progressed = false;
    if (!job.sourceEof && job.remaining != 0 && job.inPipe < job.pipeCapacity) {
      size_t want = job.pipeCapacity - job.inPipe;
      if (job.remaining > 0) want = std::min<size_t>(want, static_cast<size_t>(job.remaining));
      ssize_t n = splice(job.source.get(), nullptr, job.pipeIn.get(), nullptr, want,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        job.inPipe += n;
        if (job.remaining > 0) job.remaining -= n;
        progressed = true;
      } else if (n == 0) {
        job.sourceEof = progressed = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        // A source that fails (an origin reset or killed mid-body) ends its bytes like EOF: what
        // is in the pipe is still delivered, and the short count lets the caller resume the rest.
        job.sourceEof = progressed = true;
      }
    }
    if (job.inPipe > 0) {
      ssize_t n = splice(job.pipeOut.get(), nullptr, job.destination.get(), nullptr, job.inPipe,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        job.inPipe -= n;
        job.moved->fetch_add(n, std::memory_order_relaxed);
        budget = n >= static_cast<ssize_t>(budget) ? 0 : budget - n;
        progressed = true;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        *error = Fail("splice", errno, "to the destination socket");
        return Turn::kDone;
      }
    }
    if (job.inPipe == 0 && (job.sourceEof || job.remaining == 0)) return Turn::kDone;
    if (!progressed) return Turn::kWaiting;
    if (budget == 0) return Turn::kMore;
  }
}

void SpliceEngine::Finish(uint32_t id, bool cancelled, SysError error) {
  auto it = jobs_.find(id);
  std::unique_ptr<Job> job = std::move(it->second);
  jobs_.erase(it);
  // The caller's fds keep the sockets open: drop our registrations before closing our dups.
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, job->source.get(), nullptr);
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, job->destination.get(), nullptr);
  auto* c = new Completion{id, job->moved->load(), job->sourceEof, cancelled, std::move(error)};
  if (tsfn_.NonBlockingCall(c, Deliver) != napi_ok) delete c;
}

namespace {

SpliceEngine* EngineOf(Napi::Env env) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data->splice == nullptr) {
    data->splice = new SpliceEngine(env);
    env.AddCleanupHook([data] {
      delete data->splice;
      data->splice = nullptr;
    });
  }
  return data->splice;
}

/* spliceStart(sourceFd, destinationFd, length (-1: until EOF), onDone(error, bytes, eof, cancelled)) -> id */
Napi::Value SpliceStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "spliceStart(sourceFd, destinationFd, length, onDone)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t id = 0;
  SysError e = EngineOf(env)->Start(env, info[0].As<Napi::Number>().Int32Value(),
                                    info[1].As<Napi::Number>().Int32Value(),
                                    info[2].As<Napi::Number>().Int64Value(), info[3].As<Napi::Function>(), &id);
  return e ? ThrowNativeError(env, e) : Napi::Number::New(env, id);
}

Napi::Value SpliceBytes(const Napi::CallbackInfo& info) {
  uint64_t bytes = 0;
  bool running = EngineOf(info.Env())->Bytes(info[0].As<Napi::Number>().Uint32Value(), &bytes);
  return running ? Napi::Value(Napi::Number::New(info.Env(), static_cast<double>(bytes))) : info.Env().Null();
}

Napi::Value SpliceCancel(const Napi::CallbackInfo& info) {
  EngineOf(info.Env())->Cancel(info[0].As<Napi::Number>().Uint32Value());
  return info.Env().Undefined();
}

}  // namespace

void InitSplice(Napi::Env env, Napi::Object exports) {
  exports.Set("spliceStart", Napi::Function::New(env, SpliceStart));
  exports.Set("spliceBytes", Napi::Function::New(env, SpliceBytes));
  exports.Set("spliceCancel", Napi::Function::New(env, SpliceCancel));
}

}  // namespace wedge
