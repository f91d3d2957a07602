package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/test/monitoring"
)

// checkBundleMetrics scrapes the running dispatcher (through its Service) and operator (its
// pod) and checks that every metric an alert or dashboard panel of config/monitoring uses
// is exported. Run after the publish: by then there are delivered, dead and parked
// deliveries, a disabled endpoint and status writes, so every family has series.
func (k *cluster) checkBundleMetrics(t *testing.T) {
	qs, err := monitoring.Queries(k.root)
	if err != nil {
		t.Fatal(err)
	}
	used, err := monitoring.Metrics(qs)
	if err != nil {
		t.Fatal(err)
	}
	svc := strings.TrimSpace(k.kubectl(t, nil, "-n", system, "get", "svc", dispName, "-o", "jsonpath={.spec.clusterIP}"))
	op := strings.TrimSpace(k.kubectl(t, nil, "-n", system, "get", "pods", "-l", "app.kubernetes.io/component=operator", "-o", "jsonpath={.items[0].status.podIP}"))
	var missing []string
	waitFor(t, "every metric of the bundle exported", stepWait, func() error {
		scraped := map[string]bool{}
		for _, url := range []string{"http://" + svc + ":9090/metrics", "http://" + op + ":8080/metrics"} {
			body, err := scrape(url)
			if err != nil {
				return err
			}
			for name := range monitoring.SampleNames(body) {
				scraped[name] = true
			}
		}
		if missing = monitoring.Missing(used, scraped); len(missing) > 0 {
			return fmt.Errorf("not exported: %s", strings.Join(missing, "; "))
		}
		return nil
	})
	t.Logf("all %d metrics of the bundle's %d queries are exported", len(used), len(qs))
}

func scrape(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}
