package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

func init() {
	register("events", "list retained events of a namespace, or get one (events list|get)", runEvents)
}

func runEvents(args []string) error {
	if len(args) == 0 {
		return errors.New("say what to do: 'hookline events list' or 'hookline events get <id>'")
	}
	switch args[0] {
	case "list":
		return runEventsList(args[1:])
	case "get":
		return runEventsGet(args[1:])
	}
	return fmt.Errorf("unknown subcommand %q: use 'events list' or 'events get <id>'", args[0])
}

func runEventsList(args []string) error {
	fs := flag.NewFlagSet("events list", flag.ContinueOnError)
	api := bindAPIFlags(fs)
	kube := bindKubeFlags(fs)
	ns := fs.String("n", "default", "namespace of the events")
	typ := fs.String("type", "", "only events of this type, e.g. invoice.paid")
	since := fs.String("since", "", "only events retained at or after this time: RFC 3339 (2026-11-26T20:00:00Z) or a duration ago (2h)")
	until := fs.String("until", "", "only events retained at or before this time, as --since")
	limit := fs.Int("limit", 20, "events per page, 1 to 500")
	order := fs.String("order", "newest", "newest or oldest first")
	cursor := fs.String("cursor", "", "continue a listing: the \"next\" value a page printed")
	all := fs.Bool("all", false, "follow the pages to the end, printing one event per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	q := url.Values{}
	for name, v := range map[string]*string{"since": since, "until": until} {
		t, err := parseWhen(*v, time.Now())
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		if !t.IsZero() {
			q.Set(name, t.UTC().Format(time.RFC3339))
		}
	}
	if *limit < 1 || *limit > 500 {
		return fmt.Errorf("--limit must be from 1 to 500, got %d", *limit)
	}
	if *order != "newest" && *order != "oldest" {
		return fmt.Errorf("--order must be newest or oldest, got %q", *order)
	}
	if *typ != "" {
		q.Set("type", *typ)
	}
	q.Set("limit", strconv.Itoa(*limit))
	q.Set("order", *order)
	if _, err := kube.load(api); err != nil {
		return err
	}
	ctx := context.Background()
	next := *cursor
	for {
		if next != "" {
			q.Set("cursor", next)
		}
		out, err := callAPI(ctx, *api, http.MethodGet, "/v1/namespaces/"+url.PathEscape(*ns)+"/events?"+q.Encode(), nil, http.StatusOK)
		if err != nil {
			return err
		}
		if !*all {
			fmt.Println(out)
			return nil
		}
		var page struct {
			Items []json.RawMessage `json:"items"`
			Next  string            `json:"next"`
		}
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			return fmt.Errorf("decoding the dispatcher's answer: %w", err)
		}
		for _, it := range page.Items {
			fmt.Println(string(it))
		}
		if page.Next == "" {
			return nil
		}
		next = page.Next
	}
}

func runEventsGet(args []string) error {
	fs := flag.NewFlagSet("events get", flag.ContinueOnError)
	api := bindAPIFlags(fs)
	kube := bindKubeFlags(fs)
	ns := fs.String("n", "default", "namespace of the event")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("give the event's id: hookline events get -n shop <id>")
	}
	if _, err := kube.load(api); err != nil {
		return err
	}
	out, err := callAPI(context.Background(), *api, http.MethodGet,
		"/v1/namespaces/"+url.PathEscape(*ns)+"/events/"+url.PathEscape(fs.Arg(0)), nil, http.StatusOK)
	if err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}

// parseWhen reads an RFC 3339 time or a duration before now; "" is the zero
// time.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time such as 2026-11-26T20:00:00Z or a duration ago such as 2h, got %q", v)
	}
	return now.Add(-d), nil
}
