#pragma once
// Test certificates made by the openssl command line tool (tls_pgtest, nexusctl_pgtest).

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "pg_fixture.h"

namespace nexus::testing {

inline int Shell(const std::string& cmd) { return std::system(cmd.c_str()); }

/// A CA, a server certificate for localhost/127.0.0.1, a client certificate; and the same from a second CA.
class Certs {
 public:
  Certs() {
    dir_ = ScratchDir() + "/tls-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++);
    const std::string script =
        "set -e\n"
        "mkdir -p " +
        dir_ + " && cd " + dir_ +
        "\n"
        "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext\n"
        "for ca in ca other; do\n"
        "  openssl req -x509 $ec -keyout $ca.key -out $ca.pem -days 2 -subj /CN=test-$ca\n"
        "  openssl req $ec -keyout $ca-server.key -out $ca-server.csr -subj /CN=localhost\n"
        "  openssl req $ec -keyout $ca-client.key -out $ca-client.csr -subj /CN=client\n"
        "  openssl x509 -req -in $ca-server.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -out $ca-server.pem "
        "-days 2 -extfile san.ext\n"
        "  openssl x509 -req -in $ca-client.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -out $ca-client.pem "
        "-days 2\n"
        "done\n";
    const std::string file = ScratchDir() + "/tls-gen-" + std::to_string(::getpid()) + ".sh";
    std::ofstream(file) << script;
    ok_ = Shell("bash " + file + " >" + dir_ + ".log 2>&1") == 0;
  }
  bool ok() const { return ok_; }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  static inline int counter_ = 0;
  std::string dir_;
  bool ok_ = false;
};

}  // namespace nexus::testing
