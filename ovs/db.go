package ovs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/ovn-org/libovsdb/client"
	"github.com/ovn-org/libovsdb/model"
	"github.com/ovn-org/libovsdb/ovsdb"
)

// The subset of the Open_vSwitch schema dt uses.
type ovsRoot struct {
	UUID        string            `ovsdb:"_uuid"`
	Bridges     []string          `ovsdb:"bridges"`
	NextCfg     int               `ovsdb:"next_cfg"`
	CurCfg      int               `ovsdb:"cur_cfg"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

type bridgeRow struct {
	UUID         string            `ovsdb:"_uuid"`
	Name         string            `ovsdb:"name"`
	Ports        []string          `ovsdb:"ports"`
	DatapathType string            `ovsdb:"datapath_type"`
	FailMode     *string           `ovsdb:"fail_mode"`
	ExternalIDs  map[string]string `ovsdb:"external_ids"`
}

type portRow struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Interfaces  []string          `ovsdb:"interfaces"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

type interfaceRow struct {
	UUID          string            `ovsdb:"_uuid"`
	Name          string            `ovsdb:"name"`
	Type          string            `ovsdb:"type"`
	Options       map[string]string `ovsdb:"options"`
	OfportRequest *int              `ovsdb:"ofport_request"`
	Ofport        *int              `ovsdb:"ofport"`
	ExternalIDs   map[string]string `ovsdb:"external_ids"`
}

func dbModel() (model.ClientDBModel, error) {
	return model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		"Open_vSwitch": &ovsRoot{},
		"Bridge":       &bridgeRow{},
		"Port":         &portRow{},
		"Interface":    &interfaceRow{},
	})
}

// connect opens an OVSDB session on the instance's socket with the whole (small) db
// monitored into the client cache.
func (i *Instance) connect(ctx context.Context) (client.Client, error) {
	m, err := dbModel()
	if err != nil {
		return nil, fmt.Errorf("ovsdb model: %w", err)
	}
	quiet := logr.Discard() // libovsdb logs every reconnect attempt otherwise
	c, err := client.NewOVSDBClient(m, client.WithEndpoint("unix:"+i.DBSocket()), client.WithLogger(&quiet))
	if err != nil {
		return nil, fmt.Errorf("ovsdb client: %w", err)
	}
	if err := c.Connect(ctx); err != nil {
		return nil, fmt.Errorf("connect to ovsdb at %s: %w", i.DBSocket(), err)
	}
	// Monitor only the columns modelled here: libovsdb fails on updates to a column its
	// model lacks (seen: "column: datapath_version not found in table: Bridge").
	r, b, p, f := &ovsRoot{}, &bridgeRow{}, &portRow{}, &interfaceRow{}
	mon := c.NewMonitor(
		client.WithTable(r, &r.Bridges, &r.NextCfg, &r.CurCfg, &r.ExternalIDs),
		client.WithTable(b, &b.Name, &b.Ports, &b.DatapathType, &b.FailMode, &b.ExternalIDs),
		client.WithTable(p, &p.Name, &p.Interfaces, &p.ExternalIDs),
		client.WithTable(f, &f.Name, &f.Type, &f.Options, &f.OfportRequest, &f.Ofport, &f.ExternalIDs),
	)
	if _, err := c.Monitor(ctx, mon); err != nil {
		c.Close()
		return nil, fmt.Errorf("monitor ovsdb: %w", err)
	}
	return c, nil
}

func transact(ctx context.Context, c client.Client, ops []ovsdb.Operation) error {
	res, err := c.Transact(ctx, ops...)
	if err != nil {
		return fmt.Errorf("ovsdb transact: %w", err)
	}
	if _, err := ovsdb.CheckOperationResults(res, ops); err != nil {
		return fmt.Errorf("ovsdb transact: %w", err)
	}
	return nil
}

// initRoot inserts the single Open_vSwitch row a fresh database lacks (what
// `ovs-vsctl init` does), tagged with the run id.
func initRoot(ctx context.Context, i *Instance) error {
	c, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var roots []ovsRoot
	if err := c.List(ctx, &roots); err != nil {
		return fmt.Errorf("list Open_vSwitch: %w", err)
	}
	if len(roots) > 0 {
		return nil
	}
	ops, err := c.Create(&ovsRoot{ExternalIDs: map[string]string{"dt-run-id": i.RunID}})
	if err != nil {
		return fmt.Errorf("create Open_vSwitch row: %w", err)
	}
	return transact(ctx, c, ops)
}

// Port is one port to add to a bridge.
type Port struct {
	Name   string // the interface name on the host (a veth end), or a patch port name
	Ofport int    // requested OpenFlow port number; 0 lets OVS choose
	Peer   string // for a patch port: the name of its peer port on another bridge
	Node   string // the node this port leads to, recorded in external_ids
}

// AddBridge creates a bridge with all its ports in one OVSDB transaction. Every row is
// tagged with the run id in external_ids. Patch ports (Peer set) join two bridges.
func (i *Instance) AddBridge(ctx context.Context, name string, ports []Port) error {
	return i.change(ctx, func(c client.Client, root *ovsRoot) ([]ovsdb.Operation, error) {
		standalone := "standalone"
		br := &bridgeRow{UUID: "br_" + safeID(name), Name: name, DatapathType: i.Datapath,
			FailMode: &standalone, ExternalIDs: i.tag(nil)}
		ops, uuids, err := i.portOps(c, name, ports)
		if err != nil {
			return nil, err
		}
		br.Ports = uuids
		o, err := c.Create(br)
		if err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
		ops = append(ops, o...)
		o, err = c.Where(root).Mutate(root, model.Mutation{Field: &root.Bridges, Mutator: ovsdb.MutateOperationInsert, Value: []string{br.UUID}})
		if err != nil {
			return nil, fmt.Errorf("attach bridge %s: %w", name, err)
		}
		return append(ops, o...), nil
	})
}

// AddPorts adds ports to existing bridges, all of them in one OVSDB transaction.
func (i *Instance) AddPorts(ctx context.Context, ports map[string][]Port) error {
	return i.change(ctx, func(c client.Client, root *ovsRoot) ([]ovsdb.Operation, error) {
		var ops []ovsdb.Operation
		for name, ps := range ports {
			br := &bridgeRow{Name: name}
			if err := c.Get(ctx, br); err != nil {
				return nil, fmt.Errorf("find bridge %s: %w", name, err)
			}
			o, uuids, err := i.portOps(c, name, ps)
			if err != nil {
				return nil, err
			}
			ops = append(ops, o...)
			o, err = c.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationInsert, Value: uuids})
			if err != nil {
				return nil, fmt.Errorf("attach ports to %s: %w", name, err)
			}
			ops = append(ops, o...)
		}
		return ops, nil
	})
}

func (i *Instance) tag(extra map[string]string) map[string]string {
	m := map[string]string{"dt-run-id": i.RunID}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// portOps creates the Interface and Port rows of ports; it returns their named UUIDs.
func (i *Instance) portOps(c client.Client, bridge string, ports []Port) ([]ovsdb.Operation, []string, error) {
	var ops []ovsdb.Operation
	var uuids []string
	for k, p := range ports {
		id := safeID(bridge) + "_" + fmt.Sprint(k)
		ifc := &interfaceRow{UUID: "if_" + id, Name: p.Name, ExternalIDs: i.tag(map[string]string{"dt-node": p.Node})}
		if p.Ofport > 0 {
			n := p.Ofport
			ifc.OfportRequest = &n
		}
		if p.Peer != "" {
			ifc.Type = "patch"
			ifc.Options = map[string]string{"peer": p.Peer}
		}
		port := &portRow{UUID: "port_" + id, Name: p.Name, Interfaces: []string{ifc.UUID}, ExternalIDs: i.tag(map[string]string{"dt-node": p.Node})}
		o, err := c.Create(ifc, port)
		if err != nil {
			return nil, nil, fmt.Errorf("port %s: %w", p.Name, err)
		}
		ops = append(ops, o...)
		uuids = append(uuids, port.UUID)
	}
	return ops, uuids, nil
}

// change runs build's operations in one transaction and, like ovs-vsctl without
// --no-wait, bumps next_cfg and waits until ovs-vswitchd has applied it (cur_cfg).
func (i *Instance) change(ctx context.Context, build func(c client.Client, root *ovsRoot) ([]ovsdb.Operation, error)) error {
	c, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var roots []ovsRoot
	if err := c.List(ctx, &roots); err != nil || len(roots) != 1 {
		return fmt.Errorf("find Open_vSwitch root row: %v (rows: %d)", err, len(roots))
	}
	root := &roots[0]
	ops, err := build(c, root)
	if err != nil {
		return err
	}
	o, err := c.Where(root).Mutate(root, model.Mutation{Field: &root.NextCfg, Mutator: ovsdb.MutateOperationAdd, Value: 1})
	if err != nil {
		return fmt.Errorf("bump next_cfg: %w", err)
	}
	if err := transact(ctx, c, append(ops, o...)); err != nil {
		return err
	}
	if err := waitApplied(ctx, c, root.UUID); err != nil {
		return fmt.Errorf("%w\n%s", err, i.LogTail("ovs-vswitchd", 15))
	}
	return nil
}

// waitApplied polls until cur_cfg has caught up with next_cfg. It asks the server with a
// select each time: the monitor cache was seen to miss the cur_cfg update.
func waitApplied(ctx context.Context, c client.Client, rootUUID string) error {
	deadline := time.Now().Add(30 * time.Second)
	sel := ovsdb.Operation{Op: ovsdb.OperationSelect, Table: "Open_vSwitch", Where: []ovsdb.Condition{},
		Columns: []string{"cur_cfg", "next_cfg"}}
	var cur, next int
	for {
		res, err := c.Transact(ctx, sel)
		if err == nil && len(res) == 1 && len(res[0].Rows) == 1 {
			cur, next = asInt(res[0].Rows[0]["cur_cfg"]), asInt(res[0].Rows[0]["next_cfg"])
			if cur >= next && next > 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ovs-vswitchd did not apply the configuration within 30s (cur_cfg %d, next_cfg %d)", cur, next)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Bridges lists the bridges of this instance.
func (i *Instance) Bridges(ctx context.Context) ([]string, error) {
	c, err := i.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var brs []bridgeRow
	if err := c.List(ctx, &brs); err != nil {
		return nil, fmt.Errorf("list bridges: %w", err)
	}
	var names []string
	for _, b := range brs {
		names = append(names, b.Name)
	}
	return names, nil
}

// Ofports maps interface name to the OpenFlow port number OVS assigned.
func (i *Instance) Ofports(ctx context.Context) (map[string]int, error) {
	c, err := i.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var ifs []interfaceRow
	if err := c.List(ctx, &ifs); err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := map[string]int{}
	for _, f := range ifs {
		if f.Ofport != nil {
			out[f.Name] = *f.Ofport
		}
	}
	return out, nil
}

func safeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// asInt reads an OVSDB integer, which arrives as float64 from the JSON decoder.
func asInt(v any) int {
	switch x := v.(type) {
	case int:
		return x
	case float64:
		return int(x)
	}
	return 0
}
