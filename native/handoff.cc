#include "handoff.h"

#include <map>
#include <mutex>
#include <utility>

namespace crossport {

namespace {

struct Deposits {
  std::mutex mutex;
  uint64_t next_id = 1;
  std::map<uint64_t, LinkState> states;
};

Deposits& GetDeposits() {
  static Deposits* deposits = new Deposits();  // never destroyed: threads may outlive exit
  return *deposits;
}

}  // namespace

uint64_t DepositPort(LinkState* state) {
  Deposits& deposits = GetDeposits();
  std::lock_guard<std::mutex> lock(deposits.mutex);
  uint64_t id = deposits.next_id++;
  deposits.states.emplace(id, std::move(*state));
  return id;
}

bool WithdrawPort(uint64_t id, LinkState* state) {
  Deposits& deposits = GetDeposits();
  std::lock_guard<std::mutex> lock(deposits.mutex);
  auto found = deposits.states.find(id);
  if (found == deposits.states.end()) return false;
  *state = std::move(found->second);
  deposits.states.erase(found);
  return true;
}

}  // namespace crossport
