package experiment

import (
	"strings"
	"testing"

	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/workloads"
)

// noCAS is etcd with a client that (as far as the run knows) cannot compare-and-set or
// read serializably: only the System interface is promoted, not ClientFeatures.
type noCAS struct{ systems.System }

func (noCAS) Name() string { return "nocas-test" }

func init() {
	etcd, err := systems.Lookup("etcd")
	if err != nil {
		panic(err)
	}
	if err := systems.Register(noCAS{etcd}); err != nil {
		panic(err)
	}
}

func TestOpMix(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want workloads.Mix
		err  string
	}{
		{"default with cas", func(*Config) {}, workloads.DefaultMix, ""},
		{"default without cas", func(c *Config) { c.System = "nocas-test" }, workloads.DefaultMixNoCAS, ""},
		{"ops", func(c *Config) { c.Ops = "read=1,write=3" }, workloads.Mix{Read: 1, Write: 3}, ""},
		{"write ratio", func(c *Config) { c.WriteRatio = 0.3 }, workloads.WriteMix(0.3), ""},
		{"write ratio 0", func(c *Config) { c.WriteRatio = 0 }, workloads.WriteMix(0), ""},
		{"both, agreeing", func(c *Config) { c.Ops, c.WriteRatio = "read=40,write=40,cas=20", 0.4 }, workloads.DefaultMix, ""},
		{"both, disagreeing", func(c *Config) { c.Ops, c.WriteRatio = "read=1", 0.5 }, workloads.Mix{}, "disagree on the share of writes"},
		{"bad ops", func(c *Config) { c.Ops = "scan=1" }, workloads.Mix{}, `--ops: op mix "scan=1": "scan=1": unknown op kind "scan"; valid: read, write, cas`},
		{"bad write ratio", func(c *Config) { c.WriteRatio = 1.5 }, workloads.Mix{}, "--write-ratio 1.5: must be in [0, 1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.edit(&c)
			m, err := c.OpMix()
			switch {
			case tc.err == "" && (err != nil || m != tc.want):
				t.Fatalf("OpMix = %+v, %v; want %+v", m, err, tc.want)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			if tc.err == "" {
				r := c.withOpMix()
				if r.Ops != tc.want.String() || r.WriteRatio != tc.want.Share("write") {
					t.Errorf("recorded ops %q write_ratio %v", r.Ops, r.WriteRatio)
				}
				if _, err := r.OpMix(); err != nil {
					t.Errorf("the recorded mix does not validate: %v", err)
				}
			}
		})
	}
}

// Asking for cas, or serializable reads, of a system whose client lacks them is refused by
// Validate, before anything is created.
func TestValidateRefusesWhatTheClientLacks(t *testing.T) {
	c := Defaults()
	c.System = "nocas-test"
	if err := c.Validate(); err != nil {
		t.Fatalf("the default mix of a system without cas: %v", err)
	}
	c.Ops = "read=40,write=40,cas=20"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "the nocas-test client cannot compare-and-set") {
		t.Fatalf("cas on a system without it: %v", err)
	}
	c.Ops, c.ReadConsistency = "", workloads.ReadSerializable
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--read-consistency serializable: the nocas-test client reads linearizable only") {
		t.Fatalf("serializable on a system without it: %v", err)
	}
	c = Defaults()
	c.ReadConsistency, c.Ops = workloads.ReadSerializable, "read=1,cas=1"
	if err := c.Validate(); err != nil {
		t.Fatalf("etcd offers both: %v", err)
	}
}
