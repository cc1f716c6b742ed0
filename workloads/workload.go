// Package workloads generates client key/value operations and drives them open-loop
// (every operation has an expected start time and is sent then, whether or not earlier
// ones finished) or closed-loop (not implemented yet). It does not know any system's
// wire protocol: it talks to a KV that the system provides.
package workloads

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// KV is the small client interface a workload needs from a system.
type KV interface {
	// Put writes value under key.
	Put(ctx context.Context, key, value string) error
	// Get reads key; found is false when the key does not exist.
	Get(ctx context.Context, key string) (value string, found bool, err error)
	// Target names the endpoint the last operations went to (for the record).
	Target() string
	Close() error
}

// TargetedKV is optionally implemented by a KV that picks an endpoint per operation.
// Run then records each operation's own endpoint: asking KV.Target after the fact is
// racy as soon as operations overlap, which in open loop they do.
type TargetedKV interface {
	KV
	// PutTarget is Put that also returns the endpoint the write was sent to.
	PutTarget(ctx context.Context, key, value string) (target string, err error)
	// GetTarget is Get that also returns the endpoint the read was sent to.
	GetTarget(ctx context.Context, key string) (value string, found bool, target string, err error)
}

// Spec describes one client's share of a workload. It travels as JSON from the
// controller to the agent that runs the client.
//
// Start from DefaultSpec: WithDefaults only fills fields whose zero value is
// meaningless, because 0 is a legitimate max key (one key) and payload size (the bare
// value id).
type Spec struct {
	Name            string   `json:"name"`                       // generator: "uniform" | "zipfian"
	Client          string   `json:"client"`                     // client name recorded on every op, e.g. "c1"
	Rate            float64  `json:"rate"`                       // this client's ops/s (the controller splits --rate)
	Arrival         string   `json:"arrival"`                    // "uniform" | "poisson"
	Duration        float64  `json:"duration"`                   // seconds of load, counted from the moment Run starts its schedule
	StartUnixNano   int64    `json:"start_unix_nano"`            // the run's time zero; op times are relative to it (0: Run's own start)
	MaxKey          int      `json:"max_key"`                    // keys in [0, MaxKey]
	PayloadSize     int      `json:"payload_size"`               // bytes per written value (at least the value id)
	Mix             Mix      `json:"mix"`                        // weight of each op kind (read, write, cas)
	ReadConsistency string   `json:"read_consistency,omitempty"` // ReadLinearizable ("" too) or ReadSerializable
	MaxInflight     int      `json:"max_inflight"`               // outstanding ops cap; due ops beyond it are recorded as overload
	OpTimeout       float64  `json:"op_timeout"`                 // seconds before an op is abandoned
	Seed            int64    `json:"seed"`                       // makes keys, mix and arrivals reproducible (mixed with Client)
	System          string   `json:"system"`                     // which system's client to build (systems registry)
	Endpoints       []string `json:"endpoints"`                  // client URLs this client may use
	ZipfTheta       float64  `json:"zipf_theta,omitempty"`       // zipfian skew in (0,1); 0 = DefaultZipfTheta
}

// Defaults, as in reckon (python -m reckon ... --rate 100 --max-key 1 --payload-size 10
// --duration 60) where reckon has the knob. The op mix is not reckon's write ratio of 1,
// under which a run checks nothing but that writes succeed: DefaultMix.
const (
	DefaultGenerator   = "uniform"
	DefaultArrival     = "uniform"
	DefaultRate        = 100.0
	DefaultDuration    = 60.0
	DefaultMaxKey      = 1
	DefaultPayloadSize = 10
	// DefaultMaxInflight bounds outstanding operations per client. At reckon's 100 ops/s
	// with a 1 s timeout at most ~100 are ever outstanding, so by default overload only
	// appears at rates above ~1000 ops/s per client with the cluster unavailable.
	DefaultMaxInflight = 1000
	// DefaultOpTimeout is one etcd election timeout at reckon's failure timeout of 1 s.
	DefaultOpTimeout = 1.0
	// DefaultZipfTheta is YCSB's zipfian constant.
	DefaultZipfTheta = 0.99
)

// ErrInvalidSpec is wrapped by every error ValidateSpec returns.
var ErrInvalidSpec = errors.New("invalid workload spec")

// DefaultSpec returns a spec for client "c1" with reckon's defaults; the caller sets
// System, Endpoints, Seed and StartUnixNano.
func DefaultSpec() Spec {
	return Spec{
		Name:        DefaultGenerator,
		Client:      "c1",
		Rate:        DefaultRate,
		Arrival:     DefaultArrival,
		Duration:    DefaultDuration,
		MaxKey:      DefaultMaxKey,
		PayloadSize: DefaultPayloadSize,
		Mix:         DefaultMix,
		MaxInflight: DefaultMaxInflight,
		OpTimeout:   DefaultOpTimeout,
	}
}

// WithDefaults returns s with the fields whose zero value means "unset" filled in:
// Name, Arrival, MaxInflight, OpTimeout, ReadConsistency and ZipfTheta (for zipfian).
// Rate, Duration and Mix are not filled: 0 there is a mistake that ValidateSpec reports.
func (s Spec) WithDefaults() Spec {
	if s.Name == "" {
		s.Name = DefaultGenerator
	}
	if s.Arrival == "" {
		s.Arrival = DefaultArrival
	}
	if s.MaxInflight == 0 {
		s.MaxInflight = DefaultMaxInflight
	}
	if s.OpTimeout == 0 {
		s.OpTimeout = DefaultOpTimeout
	}
	if s.ReadConsistency == "" {
		s.ReadConsistency = ReadLinearizable
	}
	if s.Name == "zipfian" && s.ZipfTheta == 0 {
		s.ZipfTheta = DefaultZipfTheta
	}
	return s
}

// ValidateSpec reports every bad field of s (after WithDefaults), each naming the field
// by its JSON name and the valid range or choices. The error wraps ErrInvalidSpec.
func ValidateSpec(s Spec) error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, a...)...))
	}
	if _, err := Lookup(s.Name); err != nil {
		bad("name %q: unknown generator; valid: %s", s.Name, strings.Join(Names(), ", "))
	}
	if s.Client == "" {
		bad("client: empty; every op records it and value ids start with it")
	}
	if !(s.Rate > 0) || math.IsInf(s.Rate, 0) {
		bad("rate %v: must be > 0 ops/s", s.Rate)
	}
	if !validArrival(s.Arrival) {
		bad("arrival %q: valid: %s", s.Arrival, strings.Join(ArrivalNames(), ", "))
	}
	if !(s.Duration > 0) || math.IsInf(s.Duration, 0) {
		bad("duration %v: must be > 0 seconds", s.Duration)
	}
	if s.MaxKey < 0 {
		bad("max_key %d: must be >= 0 (keys are 0..max_key)", s.MaxKey)
	}
	if s.PayloadSize < 0 {
		bad("payload_size %d: must be >= 0 bytes", s.PayloadSize)
	}
	if err := s.Mix.Validate(); err != nil {
		bad("mix %s: %v", s.Mix, err)
	}
	if s.ReadConsistency != "" && !slices.Contains(ReadConsistencies(), s.ReadConsistency) {
		bad("read_consistency %q: valid: %s", s.ReadConsistency, strings.Join(ReadConsistencies(), ", "))
	}
	if s.MaxInflight < 1 {
		bad("max_inflight %d: must be >= 1", s.MaxInflight)
	}
	if !(s.OpTimeout > 0) || math.IsInf(s.OpTimeout, 0) {
		bad("op_timeout %v: must be > 0 seconds", s.OpTimeout)
	}
	if s.ZipfTheta != 0 && !(s.ZipfTheta > 0 && s.ZipfTheta < 1) {
		bad("zipf_theta %v: must be in (0, 1)", s.ZipfTheta)
	}
	return errors.Join(errs...)
}
