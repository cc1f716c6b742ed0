// Package workloads generates client key/value operations and drives them open-loop
// (every operation has an expected start time and is sent then, whether or not earlier
// ones finished) or closed-loop. It does not know any system's wire protocol: it talks
// to a KV that the system provides.
package workloads

import "context"

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

// Spec describes one client's share of a workload. It travels as JSON from the
// controller to the agent that runs the client.
type Spec struct {
	Name          string   `json:"name"`            // generator: "uniform"
	Client        string   `json:"client"`          // client name recorded on every op, e.g. "c1"
	Rate          float64  `json:"rate"`            // this client's ops/s (the controller splits --rate)
	Arrival       string   `json:"arrival"`         // "uniform" | "poisson"
	Duration      float64  `json:"duration"`        // seconds of load
	StartUnixNano int64    `json:"start_unix_nano"` // the run's time zero; op times are relative to it
	MaxKey        int      `json:"max_key"`         // keys uniform in [0, MaxKey]
	PayloadSize   int      `json:"payload_size"`    // bytes per value
	WriteRatio    float64  `json:"write_ratio"`     // fraction of writes; the rest are reads
	MaxInflight   int      `json:"max_inflight"`    // outstanding ops cap; due ops beyond it are recorded as overload
	OpTimeout     float64  `json:"op_timeout"`      // seconds before an op is abandoned
	Seed          int64    `json:"seed"`            // makes keys, mix and arrivals reproducible
	System        string   `json:"system"`          // which system's client to build (systems registry)
	Endpoints     []string `json:"endpoints"`       // client URLs this client may use
}
