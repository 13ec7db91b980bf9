// Waits until a Kafka cluster has registered the expected number of brokers, using the
// Admin client that ships with the broker's own jars (no kafka-tools needed). Run by
// scripts/kafka-cluster as a single-file program: java -cp <broker classpath> WaitForBrokers.java
//
// Arguments: <bootstrap> <brokers> <timeout seconds> [<client properties file>]
// Exits 0 once describeCluster() lists that many brokers, 1 on time-out.

import java.io.FileInputStream;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class WaitForBrokers {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        int expected = Integer.parseInt(args[1]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[2]));
        Properties props = new Properties();
        if (args.length > 3) {
            try (FileInputStream in = new FileInputStream(args[3])) {
                props.load(in);
            }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
        int seen = -1;
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    seen = admin.describeCluster().nodes().get(3, TimeUnit.SECONDS).size();
                    if (seen >= expected) {
                        System.out.println("brokers=" + seen);
                        return;
                    }
                } catch (Exception e) {
                    // Not up yet: the broker refuses connections or has no metadata.
                }
                Thread.sleep(250);
            }
        }
        System.err.println("only " + Math.max(seen, 0) + " of " + expected + " brokers registered in time");
        System.exit(1);
    }
}
