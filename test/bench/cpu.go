package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is CPU time used so far: by the dispatcher, by this program (publishers
// and receivers), and by the whole machine. Differences between two samples say who
// had the two cores during a phase, which on a shared machine is the first thing to
// know about a figure.
type cpuSample struct {
	at         time.Time
	dispatcher time.Duration
	self       time.Duration
	busy       time.Duration // all CPUs, not idle or waiting for I/O
}

// clockTick is the unit of /proc times: USER_HZ, 100 on every Linux the project runs on.
const clockTick = 10 * time.Millisecond

func sampleCPU(pid int) cpuSample {
	s := cpuSample{at: time.Now(), dispatcher: procCPU(pid), self: selfCPU(), busy: machineBusy()}
	return s
}

// procCPU reads utime+stime of pid from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, may hold spaces; the rest follows its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time of all CPUs not idle or in iowait, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var total int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		total += n
	}
	return time.Duration(total) * clockTick
}

// cpuShare is how many cores each party used on average between two samples.
type cpuShare struct {
	Dispatcher, Self, Others float64
}

func shareBetween(a, b cpuSample) cpuShare {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return cpuShare{}
	}
	d := (b.dispatcher - a.dispatcher).Seconds() / wall
	s := (b.self - a.self).Seconds() / wall
	busy := (b.busy - a.busy).Seconds() / wall
	return cpuShare{Dispatcher: d, Self: s, Others: max(busy-d-s, 0)}
}
