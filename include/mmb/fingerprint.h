// Fingerprints of settings and inputs: what a cached result (the DPO reference log-probs, a
// recipe or alignment phase) was computed from, so that a rerun reuses it only when nothing it
// depends on changed, and otherwise says what did.
//
// A fingerprint is built from named parts: JSON settings (canonical: object keys sorted, so key
// order does not matter) and files (by content). Its id is a 64-bit FNV-1a hash in hex of every
// part's name and digest; the parts themselves are kept, so a mismatch names the parts that
// differ. Not cryptographic: it guards against accidents, not adversaries. Thread-compatible
// (no shared state).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "mmb/json.h"

namespace mmb {

// 16 hex digits of the FNV-1a 64 hash of `bytes`.
std::string fnv1a_hex(const std::string& bytes);
// fnv1a_hex of a file's whole content, read in blocks. Throws mmb::Error naming the file.
std::string file_digest(const std::string& path);

class Fingerprint {
 public:
  // Adds a part; a second part of the same name replaces the first.
  Fingerprint& add(const std::string& name, const Json& settings);          // digest of its canonical dump
  Fingerprint& add_file(const std::string& name, const std::string& path);  // digest of the content
  std::string id() const;                                                   // over all parts, in name order
  // {"id": ..., "parts": {name: digest}} and the reverse; from_json throws mmb::Error naming `where`.
  Json to_json() const;
  static Fingerprint from_json(const Json& j, const std::string& where);
  // Names of the parts that differ (present in one only, or with other digests), sorted.
  std::vector<std::string> differences(const Fingerprint& other) const;
  // Throws mmb::Error "<what>: <where> was computed from other inputs: <parts> changed" unless
  // `stored` equals *this.
  void require_same(const Fingerprint& stored, const std::string& what, const std::string& where) const;

 private:
  std::map<std::string, std::string> parts_;  // name -> digest
};

}  // namespace mmb
