package queue

import (
	"fmt"
	"slices"
	"testing"
)

func TestAssignSpreadsEveryPartition(t *testing.T) {
	for n := 1; n <= 7; n++ {
		t.Run(fmt.Sprint(n, " replicas"), func(t *testing.T) {
			var members []string
			for i := range n {
				members = append(members, fmt.Sprintf("replica-%d", i))
			}
			got := assign(members)
			count := map[string]int{}
			for p, m := range got {
				if !slices.Contains(members, m) {
					t.Fatalf("partition %d assigned to %q, not a member", p, m)
				}
				count[m]++
			}
			// Even: every member has floor or floor+1.
			floor := Partitions / n
			for _, m := range members {
				if count[m] < floor || count[m] > floor+1 {
					t.Errorf("%s has %d partitions, want %d or %d: %v", m, count[m], floor, floor+1, count)
				}
			}
			// The same set in another order gives the same assignment.
			rev := slices.Clone(members)
			slices.Reverse(rev)
			if again := assign(rev); again != got {
				t.Errorf("order of members changed the assignment:\n%v\n%v", got, again)
			}
		})
	}
	if got := assign(nil); got != [Partitions]string{} {
		t.Errorf("no members: %v, want every partition unassigned", got)
	}
}

// A replica joining or leaving moves only some partitions: those it takes
// or gives up, and a few more to keep the counts even.
func TestAssignMovesFewPartitions(t *testing.T) {
	three := []string{"a", "b", "c"}
	four := []string{"a", "b", "c", "d"}
	before, after := assign(three), assign(four)
	moved, toD := 0, 0
	for p := range Partitions {
		if before[p] != after[p] {
			moved++
			if after[p] == "d" {
				toD++
			}
		}
	}
	t.Logf("a fourth replica moved %d of %d partitions, %d of them to it", moved, Partitions, toD)
	if moved > Partitions/2 {
		t.Errorf("a fourth replica moved %d of %d partitions", moved, Partitions)
	}
}
