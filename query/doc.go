// Package query parses and evaluates the IoT Hub query language (protocol
// digest §6): the text of POST /devices/query and the queryCondition of
// scheduled jobs (§3.7, §3.8).
//
// There are two ways to run a parsed Query:
//
//   - Match and Evaluate are the reference evaluator. They work on twin or
//     device-job documents shaped as the hub's JSON and define the semantics.
//   - Compile turns a Query into SQL over the emulator's SQLite tables, using a
//     Schema that says where each document path is stored. It is the fast
//     path; when a construct cannot be expressed it returns ErrNotCompilable
//     and the caller falls back to the evaluator over fetched rows. A property
//     test keeps the two in agreement.
//
// # Semantics
//
// The hub's query language descends from DocumentDB SQL, and this package
// follows DocumentDB's three-valued logic. Every condition evaluates to true,
// false or undefined, and a document matches only when its condition is true
// (digest §6: "anything other than boolean true is false").
//
//   - A comparison is defined only between two values of the same primitive
//     type: number/number, string/string, bool/bool, null/null. Anything else
//     (a missing property, an object or array, mixed types) is undefined, so
//     both `x = 1` and `x != 1` are false for x = "1" or a missing x.
//   - null equals null: `x = null` is true when x is present and null, and
//     `x != null` is never true (it is false for null and undefined for every
//     other value, which is not null's type).
//   - Ordering (< <= > >=) is defined for numbers and strings only; strings
//     compare by bytes (UTF-8 code points), as SQLite's BINARY collation does.
//   - NOT keeps undefined undefined; AND is false if either side is false and
//     OR is true if either side is true (Kleene logic). So `NOT tags.x = 1`
//     does not match twins that have no tags.x.
//   - x IN [..] is undefined when x is missing or not primitive, true when x
//     equals (as above) one of the list's values, false otherwise; NIN is its
//     negation.
//   - IS_DEFINED, IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT and
//     IS_PRIMITIVE are never undefined; IS_DEFINED is true for a property that
//     is present with value null. STARTSWITH and ENDSWITH are undefined unless
//     both arguments are strings.
//   - A bare attribute path or literal used as a condition is true only when
//     it is the boolean true.
//
// # Names
//
// Keywords, function names and collection names are case-insensitive.
// Property names are case-sensitive, except the twin's top-level system
// properties (deviceId, status, lastActivityTime, …), the structural names
// tags, properties, desired, reported, $metadata, $version and
// capabilities.iotEdge, and the fields of devices.jobs records, which match
// case-insensitively and are rewritten to their canonical spelling (so
// `SELECT DeviceId` yields "deviceId", as the hub's current documentation
// shows). The collection prefix of a path (`devices.jobs.jobId`,
// `devices.modules.moduleId`, `devices.x`) is stripped. In devices.jobs,
// createdTimeUtc and lastUpdatedTimeUtc (the names the hub's documentation
// uses in filters) are aliases of createdDateTimeUtc and
// lastUpdatedDateTimeUtc (the names in the documents).
package query
