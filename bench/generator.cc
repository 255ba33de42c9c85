#include "bench/generator.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <stdexcept>
#include <unordered_set>

#include "resolver/normalize.h"
#include "resolver/protection.h"

namespace nexus::bench {
namespace {

// splitmix64: deterministic on every platform (std distributions are implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : Next() % n; }
  double Unit() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
  bool Chance(double p) { return Unit() < p; }

 private:
  uint64_t s_;
};

const char* kFirst[] = {"alice",   "bob",  "carol",  "dave",  "erin",   "frank", "grace", "heidi", "ivan",   "judy",
                        "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "uma",   "victor", "wendy"};
const char* kLast[] = {"smith",  "jones", "garcia", "miller", "davis", "lopez", "wilson", "moore",  "taylor", "lee",
                       "martin", "clark", "lewis",  "walker", "hall",  "young", "king",   "wright", "scott",  "green"};
const char* kTitles[] = {"Engineer", "Manager", "Director", "Analyst", "Designer", "VP Sales", "CTO", "Buyer"};

std::string Cap(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}
std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

struct Person {
  std::vector<GenIdentifier> ids;  // canonical raw == norm; variants made per mention
  std::string first, last;
  int64_t company = 0;
  std::string work_email;
};

// A raw variant of an identifier that normalizes to the same value.
std::string Variant(const GenIdentifier& id, Rng& r) {
  if (id.type == "email" && id.norm.size() > 10 && id.norm.compare(id.norm.size() - 10, 10, "@gmail.com") == 0) {
    // Gmail ignores dots and +tags, and googlemail.com is gmail.com: the provider rules must undo these.
    const std::string local = id.norm.substr(0, id.norm.size() - 10);
    switch (r.Below(4)) {
      case 0: {
        const size_t at = 1 + r.Below(local.size() - 1);
        return Cap(local.substr(0, at)) + "." + local.substr(at) + "@gmail.com";
      }
      case 1:
        return local + "+news@gmail.com";
      case 2:
        return Upper(local) + "@GoogleMail.com";
      default:
        return id.norm;
    }
  }
  if (id.type == "email") {
    switch (r.Below(5)) {
      case 0:
        return Upper(id.norm);
      case 1:
        return "  " + id.norm + " ";
      case 2: {
        std::string s = id.norm;
        auto at = s.find('@');
        return Cap(s.substr(0, at)) + Upper(s.substr(at, 2)) + s.substr(std::min(s.size(), at + 2));
      }
      default:
        return id.norm;
    }
  }
  if (id.type == "phone" && id.norm.rfind("+44", 0) == 0) {  // London: +44 20 + 8 digits
    const std::string d = id.norm.substr(5);
    switch (r.Below(4)) {
      case 0:
        return "+44 20 " + d.substr(0, 4) + " " + d.substr(4);
      case 1:
        return "+44 (0)20 " + d.substr(0, 4) + " " + d.substr(4);
      case 2:
        return "011 44 20 " + d.substr(0, 4) + "-" + d.substr(4);  // dialled from the US (default region)
      default:
        return id.norm;
    }
  }
  if (id.type == "phone") {  // norm = +1 + 10 digits; the national forms rely on the default region (US)
    const std::string d = id.norm.substr(2);
    switch (r.Below(8)) {
      case 0:
        return "+1 (" + d.substr(0, 3) + ") " + d.substr(3, 3) + "-" + d.substr(6);
      case 1:
        return "+1-" + d.substr(0, 3) + "-" + d.substr(3, 3) + "-" + d.substr(6);
      case 2:
        return "+1." + d.substr(0, 3) + "." + d.substr(3, 3) + "." + d.substr(6);
      case 3:
        return " +1 " + d.substr(0, 3) + " " + d.substr(3, 3) + " " + d.substr(6) + "\t";
      case 4:
        return "(" + d.substr(0, 3) + ") " + d.substr(3, 3) + "-" + d.substr(6);
      case 5:
        return d.substr(0, 3) + "-" + d.substr(3, 3) + "-" + d.substr(6);
      case 6:
        return "1 " + d.substr(0, 3) + " " + d.substr(3, 3) + " " + d.substr(6);
      default:
        return id.norm;
    }
  }
  if (id.type == "domain") {
    switch (r.Below(4)) {
      case 0:
        return "https://www." + Cap(id.norm) + "/about";
      case 1:
        return "WWW." + Upper(id.norm);
      case 2:
        return id.norm + ".";
      default:
        return id.norm;
    }
  }
  if (r.Chance(0.2)) return " " + id.norm;
  return id.norm;
}

GenIdentifier Canon(std::string type, std::string norm) { return GenIdentifier{type, norm, norm}; }

/// The n-th distinct phone number, valid for libphonenumber: every tenth a London number, the others in a set of
/// US area codes with exchanges 200-999 (both mappings are one-to-one, so numbers never collide).
std::string PhoneNumber(int64_t n) {
  static const int kAreas[] = {201, 202, 206, 212, 213, 214, 303, 305, 312, 404, 415,
                               503, 512, 602, 617, 646, 702, 713, 718, 805, 917, 919};
  constexpr int64_t kAreaCount = sizeof kAreas / sizeof kAreas[0];
  if (n % 10 == 9) return "+4420" + std::to_string(70000000 + (n / 10) % 20000000);
  const int64_t rest = n / kAreaCount;
  const int64_t exchange = 200 + (rest / 10000) % 800, line = rest % 10000;
  char buf[24];
  std::snprintf(buf, sizeof buf, "+1%d%03lld%04lld", kAreas[n % kAreaCount], static_cast<long long>(exchange),
                static_cast<long long>(line));
  return buf;
}
GenIdentifier WithVariant(const GenIdentifier& id, Rng& r) { return GenIdentifier{id.type, Variant(id, r), id.norm}; }

struct Task {
  double key;
  int64_t person;
  std::vector<int> idx;  // indices into person's ids
  std::string edge_id;   // explicit edge id (split edges), else empty
};

constexpr int64_t kBaseUs = 1735689600LL * 1000000;  // 2025-01-01T00:00:00Z
constexpr int64_t kDayUs = 86400LL * 1000000;

struct Shape {
  const char* type;
  const char* source;
  const char* roles[2];
};
const Shape kShapes[] = {
    {"email", "gmail", {"sender", "recipient"}},      {"meeting", "gcal", {"organizer", "attendee"}},
    {"page_view", "segment", {"visitor", "visitor"}}, {"purchase", "shopify", {"customer", "customer"}},
    {"ticket", "zendesk", {"requester", "cc"}},       {"deal_update", "hubspot", {"owner", "contact"}}};

}  // namespace

int64_t PersonsForIdentifiers(int64_t identifiers) {
  // anon 1-3 (2.0) + work email 1 + personal email 0.5 + phones 0-2 (1.0) + user_id 0.7 = 5.2
  return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(identifiers) / 5.2));
}

World Generate(const GenOptions& opt) {
  Rng r(opt.seed * 0x2545F4914F6CDD1DULL + 1);
  World w;
  const int64_t n = opt.persons;
  const int64_t companies = std::max<int64_t>(1, n / 20);
  std::vector<Person> people(static_cast<size_t>(n));
  auto make_person = [&](int64_t i, Person& p, bool fresh) {
    p.first = kFirst[r.Below(20)];
    p.last = kLast[r.Below(20)];
    p.company = static_cast<int64_t>(r.Below(static_cast<uint64_t>(companies)));
    char hex[17];
    const int anons = fresh ? 1 : 1 + static_cast<int>(r.Below(3));
    for (int j = 0; j < anons; ++j) {
      std::snprintf(hex, sizeof hex, "%08llx", static_cast<unsigned long long>(r.Next() & 0xffffffffULL));
      p.ids.push_back(Canon("anonymous_id", "a" + std::to_string(i) + "-" + std::to_string(j) + "-" + hex));
    }
    p.work_email =
        p.first + "." + p.last + "." + std::to_string(i) + "@company" + std::to_string(p.company) + ".example";
    p.ids.push_back(Canon("email", p.work_email));
    if (!fresh && r.Chance(0.5)) p.ids.push_back(Canon("email", p.first + p.last + std::to_string(i) + "@gmail.com"));
    const int phones = fresh ? 0 : static_cast<int>(r.Below(3));
    for (int j = 0; j < phones; ++j) p.ids.push_back(Canon("phone", PhoneNumber(i * 3 + j)));
    if (fresh || r.Chance(0.7)) p.ids.push_back(Canon("user_id", "usr-" + std::to_string(100000 + i)));
    for (const auto& id : p.ids) {
      if (!w.person_truth.emplace(IdKey(id.type, id.norm), i).second)
        throw std::logic_error("generator: duplicate identifier " + id.norm);
    }
  };
  for (int64_t i = 0; i < n; ++i) make_person(i, people[static_cast<size_t>(i)], false);

  // Mention tasks: spanning tree edges (one late), some split over two events by an explicit edge id,
  // plus single-identifier mentions.
  std::vector<Task> tasks;
  for (int64_t i = 0; i < n; ++i) {
    const Person& p = people[static_cast<size_t>(i)];
    const int k = static_cast<int>(p.ids.size());
    const int late = k > 1 ? 1 + static_cast<int>(r.Below(static_cast<uint64_t>(k - 1))) : -1;
    for (int j = 1; j < k; ++j) {
      const int parent = static_cast<int>(r.Below(static_cast<uint64_t>(j)));
      const double key = j == late ? 0.7 + 0.3 * r.Unit() : r.Unit();
      if (r.Chance(0.1)) {
        const std::string edge = "crm-" + std::to_string(i) + "-" + std::to_string(j);
        tasks.push_back({key, i, {parent}, edge});
        tasks.push_back({r.Unit(), i, {j}, edge});
      } else {
        tasks.push_back({key, i, {parent, j}, ""});
      }
    }
    const int singles = 1 + static_cast<int>(r.Below(3));
    for (int s = 0; s < singles; ++s) tasks.push_back({r.Unit(), i, {static_cast<int>(r.Below(k))}, ""});
  }
  std::sort(tasks.begin(), tasks.end(),
            [](const Task& a, const Task& b) { return a.key != b.key ? a.key < b.key : a.person < b.person; });

  std::vector<char> group_used(static_cast<size_t>(companies), 0);
  auto domain_of = [](int64_t c) { return Canon("domain", "company" + std::to_string(c) + ".example"); };
  auto mention_of = [&](const Task& t, const char* role, bool traits) {
    const Person& p = people[static_cast<size_t>(t.person)];
    GenMention m;
    m.edge_id = t.edge_id;
    m.role = role;
    for (int ix : t.idx) m.ids.push_back(WithVariant(p.ids[static_cast<size_t>(ix)], r));
    if (traits && r.Chance(0.3)) m.traits.push_back({"name", Cap(p.first) + " " + Cap(p.last)});
    if (traits && r.Chance(0.1)) m.traits.push_back({"title", kTitles[r.Below(8)]});
    return m;
  };
  auto decorate = [&](GenEvent& e, int64_t company, const Person* member) {
    if (r.Chance(0.35)) {
      group_used[static_cast<size_t>(company)] = 1;
      GenMention g;
      g.role = "account";
      g.ids.push_back(WithVariant(domain_of(company), r));
      if (r.Chance(0.2)) g.ids.push_back(Canon("shopify_id", "shop-" + std::to_string(company)));
      if (r.Chance(0.3)) g.traits.push_back({"company_name", "Company " + std::to_string(company)});
      e.groups.push_back(std::move(g));
    }
    if (member && r.Chance(0.15)) {
      group_used[static_cast<size_t>(company)] = 1;
      e.memberships.push_back({WithVariant(Canon("email", member->work_email), r), WithVariant(domain_of(company), r),
                               r.Chance(0.8) ? "member" : "admin"});
    }
  };

  std::vector<GenEvent> base;
  base.reserve(tasks.size() / 2 + 1);
  size_t ti = 0;
  while (ti < tasks.size()) {
    GenEvent e;
    e.event_id = "ev" + std::to_string(base.size());
    const Shape& sh = kShapes[r.Below(6)];
    e.type = sh.type;
    e.source = sh.source;
    e.name = std::string(sh.type) + " #" + std::to_string(base.size());
    if (r.Chance(0.3)) e.description = "synthetic " + std::string(sh.type);
    const double key = tasks[ti].key;
    e.occurred_us = r.Chance(0.05) ? kBaseUs + static_cast<int64_t>(r.Below(300)) * kDayUs  // backfill
                                   : kBaseUs + static_cast<int64_t>(key * 300.0 * kDayUs) +
                                         static_cast<int64_t>(r.Below(4 * kDayUs)) - 2 * kDayUs;
    if (e.type == "purchase") {
      e.value = static_cast<double>(r.Below(100000)) / 100.0;
      e.unit = "USD";
    }
    const int want = 1 + static_cast<int>(r.Below(3));
    for (int m = 0; m < want && ti < tasks.size(); ++m, ++ti)
      e.persons.push_back(mention_of(tasks[ti], sh.roles[m == 0 ? 0 : 1], true));
    const Person& first = people[static_cast<size_t>(tasks[ti - static_cast<size_t>(e.persons.size())].person)];
    decorate(e, first.company, &first);
    base.push_back(std::move(e));
  }

  // Re-sent copies later in the stream.
  std::vector<std::pair<double, size_t>> order;
  order.reserve(base.size() * 103 / 100 + 1);
  for (size_t i = 0; i < base.size(); ++i) {
    order.push_back({static_cast<double>(i), i});
    if (r.Chance(opt.resend_rate))
      order.push_back({static_cast<double>(i) + 1.5 + static_cast<double>(r.Below(3000)), i + base.size()});
  }
  std::stable_sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.first < b.first; });
  // Every event is moved out of `base`, except the first sending of an event that is re-sent later (its copy
  // comes later in the order and takes the original): one copy of the world, not two (10M identifiers).
  std::vector<char> resent_later(base.size(), 0);
  for (auto& [k, idx] : order)
    if (idx >= base.size()) resent_later[idx - base.size()] = 1;
  w.events.reserve(order.size());
  for (auto& [k, idx] : order) {
    (void)k;
    const bool copy = idx >= base.size();
    if (copy) {
      w.events.push_back(std::move(base[idx - base.size()]));
    } else if (resent_later[idx]) {
      w.events.push_back(base[idx]);
    } else {
      w.events.push_back(std::move(base[idx]));
    }
    w.resent.push_back(copy ? 1 : 0);
  }
  std::vector<GenEvent>().swap(base);

  // Freshness phase: each request = one probe event introducing a brand-new person (all identifiers on one
  // edge) + filler events re-mentioning one identifier of an existing person.
  people.resize(static_cast<size_t>(n + opt.fresh_requests));
  int64_t fe = 0;
  for (int64_t q = 0; q < opt.fresh_requests; ++q) {
    const int64_t i = n + q;
    Person& p = people[static_cast<size_t>(i)];
    make_person(i, p, true);
    std::vector<GenEvent> req;
    GenEvent probe;
    probe.event_id = "fr" + std::to_string(fe++);
    probe.type = "signup";
    probe.source = "segment";
    probe.name = "signup";
    probe.occurred_us = kBaseUs + 301 * kDayUs + q * 1000000;
    GenMention m;
    m.role = "user";
    for (auto& id : p.ids) m.ids.push_back(WithVariant(id, r));
    m.traits.push_back({"name", Cap(p.first) + " " + Cap(p.last)});
    probe.persons.push_back(std::move(m));
    w.fresh_probe_ids.push_back(p.ids[1]);  // the work email
    req.push_back(std::move(probe));
    for (int64_t f = 1; f < opt.fresh_batch; ++f) {
      GenEvent e;
      e.event_id = "fr" + std::to_string(fe++);
      e.type = "page_view";
      e.source = "segment";
      e.name = "page_view";
      e.occurred_us = kBaseUs + static_cast<int64_t>(r.Below(300)) * kDayUs;
      const int64_t who = static_cast<int64_t>(r.Below(static_cast<uint64_t>(n)));
      const Person& op = people[static_cast<size_t>(who)];
      GenMention mm;
      mm.role = "visitor";
      mm.ids.push_back(WithVariant(op.ids[r.Below(op.ids.size())], r));
      e.persons.push_back(std::move(mm));
      req.push_back(std::move(e));
    }
    w.fresh_requests.push_back(std::move(req));
  }

  w.persons = static_cast<int64_t>(people.size());
  for (size_t c = 0; c < group_used.size(); ++c) {
    if (!group_used[c]) continue;
    ++w.groups_used;
    w.group_truth[IdKey("domain", domain_of(static_cast<int64_t>(c)).norm)] = static_cast<int64_t>(c);
  }
  // shopify_id only counts when it was actually sent.
  for (const auto& e : w.events)
    for (const auto& g : e.groups)
      for (const auto& id : g.ids)
        if (id.type == "shopify_id") w.group_truth[IdKey(id.type, id.norm)] = std::stoll(id.norm.substr(5));

  // Self-check: every variant normalizes to its truth value the way the server does, nothing is junk,
  // and every person stays within the default caps.
  const auto prot = resolver::ProtectionConfig::Defaults();
  auto check = [&](const GenIdentifier& id) {
    const auto got = prot.Classify(id.type, id.raw);
    if (got.value != id.norm)
      throw std::logic_error("generator: '" + id.raw + "' normalizes to '" + got.value + "', not '" + id.norm + "'");
    if (got.not_linkable) throw std::logic_error("generator: " + id.norm + " would not link: " + *got.not_linkable);
  };
  for (const auto& e : w.events) {
    for (const auto& m : e.persons)
      for (const auto& id : m.ids) check(id);
    for (const auto& m : e.groups)
      for (const auto& id : m.ids) check(id);
    for (const auto& m : e.memberships) check(m.person), check(m.group);
  }
  for (const auto& req : w.fresh_requests)
    for (const auto& e : req)
      for (const auto& m : e.persons)
        for (const auto& id : m.ids) check(id);
  for (const auto& p : people) {
    std::unordered_map<std::string, int64_t> per_type;
    for (const auto& id : p.ids) ++per_type[id.type];
    for (const auto& [t, c] : per_type) {
      if (c > prot.person_caps.CapFor(t)) throw std::logic_error("generator: cap exceeded for " + t);
    }
    if (static_cast<int64_t>(p.ids.size()) > prot.person_caps.max_entity_size)
      throw std::logic_error("generator: entity too large");
  }
  w.person_ids.reserve(people.size());
  for (auto& p : people) w.person_ids.push_back(std::move(p.ids));
  return w;
}

}  // namespace nexus::bench
