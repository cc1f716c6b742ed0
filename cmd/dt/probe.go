package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtlab/dt/probe"
	"github.com/dtlab/dt/topology"
)

// newProbeCmd is `dt probe`: the sample probes a scenario step can call (package probe).
func newProbeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "probe",
		Short: "Serve a sample probe: an HTTP check a scenario step calls from inside the cluster",
		Long: `probe serves a small HTTP check of a running system. A scenario step's probe URL is
called after the step through a node's agent, so from inside the emulated network, and a
non-2xx answer is recorded as a failed probe. The code of each probe (package probe) is
meant to be copied to write your own.`,
	}
	c.AddCommand(newProbeEtcdCmd())
	return c
}

func newProbeEtcdCmd() *cobra.Command {
	var listen, endpoints string
	c := &cobra.Command{
		Use:   "etcd",
		Short: "Serve GET /check: write a key to etcd, read it back linearizably; 200 or 503 with JSON",
		Long: `etcd serves GET http://ADDR/check until it is signalled. Each check writes a key of its
own (dt-probe/...), reads it back with a linearizable Get and compares; it answers 200
with {"ok":true,"revision":...,"member_id":...,"write_ms":...,"read_ms":...}, or 503 with
the error. Each check is bounded by 2s; ?timeout=500ms changes that.

--endpoints defaults to $` + probe.EnvEndpoints + ` (comma-separated), which dt sets for the
processes it starts for a scenario.`,
		Example: `  dt probe etcd --endpoints http://10.0.1.1:2379,http://10.0.1.2:2379,http://10.0.1.3:2379
  DT_ENDPOINTS=http://127.0.0.1:2379 dt probe etcd --listen 127.0.0.1:7070`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eps, err := probeEndpoints(endpoints, cmd.Flags().Changed("endpoints"))
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("probe: --listen %s: %w", listen, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "probe: serving GET http://%s/check against %s\n", ln.Addr(), strings.Join(eps, ","))
			return serveProbe(cmd.Context(), ln, probe.EtcdCheck(eps))
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:7070", "address to serve GET /check on")
	c.Flags().StringVar(&endpoints, "endpoints", "", "etcd client URLs, comma-separated (default $"+probe.EnvEndpoints+")")
	return c
}

// probeEndpoints is --endpoints, or $DT_ENDPOINTS when the flag was not given.
func probeEndpoints(flag string, given bool) ([]string, error) {
	from := "--endpoints"
	if !given {
		flag, from = os.Getenv(probe.EnvEndpoints), "$"+probe.EnvEndpoints
	}
	eps := topology.SplitGroup(flag)
	if len(eps) == 0 {
		if given {
			return nil, errors.New("probe: --endpoints is empty: give the system's client URLs, comma-separated")
		}
		return nil, fmt.Errorf("probe: no endpoints: give --endpoints URL,URL or set %s", probe.EnvEndpoints)
	}
	for _, ep := range eps {
		if strings.ContainsAny(ep, " \t") || strings.HasPrefix(ep, "-") {
			return nil, fmt.Errorf("probe: %s: %q is not an endpoint; want client URLs such as http://10.0.1.1:2379", from, ep)
		}
	}
	return eps, nil
}

// serveProbe serves h on ln until ctx is cancelled (dt's SIGINT/SIGTERM), then lets
// checks in flight finish for up to a second.
func serveProbe(ctx context.Context, ln net.Listener, h http.Handler) error {
	if ctx == nil {
		ctx = context.Background()
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("probe: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	return nil
}
