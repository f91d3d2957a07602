//go:build clusterprocs

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// dumpDiagnostics logs what explains a delivery that does not come: per
// delivery partition its consumer's pending, awaiting-ack and waiting pulls
// and the pin id, the replicas in HL_MEMBERS, what is stored per delivery
// subject of ns, and each dispatcher's last partition assignment and log
// lines.
func (e *env) dumpDiagnostics(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	defer func() { t.Logf("diagnostics:\n%s", b.String()) }()
	var nc *nats.Conn
	var err error
	for _, nd := range e.nats {
		if nc, err = nats.Connect(nd.url(), nats.Timeout(2*time.Second)); err == nil {
			break
		}
	}
	if nc == nil {
		fmt.Fprintf(&b, "no NATS node answers: %v\n", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if s, err := js.Stream(ctx, "HL_DELIVERIES"); err != nil {
		fmt.Fprintf(&b, "HL_DELIVERIES: %v\n", err)
	} else {
		for c := range s.ListConsumers(ctx).Info() {
			if !strings.HasPrefix(c.Name, "dlv__") && !strings.Contains(c.Name, ns) {
				continue
			}
			pin := ""
			for _, g := range c.PriorityGroups {
				pin += g.Group + "=" + g.PinnedClientID
			}
			fmt.Fprintf(&b, "consumer %s: pending %d, awaiting ack %d, redelivered %d, waiting pulls %d, pin %s\n",
				c.Name, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting, pin)
		}
		if info, err := s.Info(ctx, jetstream.WithSubjectFilter(">")); err == nil {
			for subj, n := range info.State.Subjects {
				if strings.Contains(subj, "."+ns+".") {
					fmt.Fprintf(&b, "stored on %s: %d\n", subj, n)
				}
			}
		}
	}
	if s, err := js.Stream(ctx, "HL_MEMBERS"); err == nil {
		if info, err := s.Info(ctx, jetstream.WithSubjectFilter(">")); err == nil {
			fmt.Fprintf(&b, "HL_MEMBERS: %v\n", sortedKeys(info.State.Subjects))
		}
	}
	for _, d := range e.disp {
		fmt.Fprintf(&b, "%s: last assignment: %s\n", d.name, d.lastLine("Delivery partitions assigned"))
		fmt.Fprintf(&b, "%s: last lines:\n%s\n", d.name, d.logTail(15))
	}
}

func sortedKeys(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// lastLine is the last line of the process's log containing s.
func (p *proc) lastLine(s string) string {
	return strings.Join(p.linesWith(s, 1), "")
}

// linesWith is the last n lines of the process's log containing s.
func (p *proc) linesWith(s string, n int) []string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// checkNoDrops fails the test if a dispatcher dropped a delivery of ns
// because it did not know its subscription: the fan-out had matched the
// event to it, so dropping it loses an accepted event.
func (e *env) checkNoDrops(t *testing.T, ns string) {
	t.Helper()
	for _, d := range e.disp {
		for _, l := range d.linesWith(dropLogMessage, 1000) {
			if strings.Contains(l, `"`+ns+`"`) {
				t.Errorf("%s dropped a delivery of a subscription it did not know: %s", d.name, l)
			}
		}
	}
}

// dropLogMessage is what the engine logs when it drops a delivery
// (internal/engine/handler.go).
const dropLogMessage = "Dropping a delivery: its subscription does not exist"
