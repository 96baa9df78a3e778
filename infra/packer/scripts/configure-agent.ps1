# Makes the template ready for unattended UI automation:
# auto-logon for the agent user, RDP, no sleep / screen saver / lock screen,
# no automatic update restarts, Hyper-V integration services on.
#
# The agent password arrives in HVKUBE_AGENT_PASSWORD (a Packer variable,
# passed through a temporary script that Packer deletes). It is stored the
# way Windows itself stores an auto-logon password: as the LSA secret
# "DefaultPassword", not as the plain-text Winlogon registry value.

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$User = $env:HVKUBE_AGENT_USER
$Password = $env:HVKUBE_AGENT_PASSWORD
if (-not $User) { throw 'HVKUBE_AGENT_USER is not set' }
if (-not $Password) { throw 'HVKUBE_AGENT_PASSWORD is not set' }

function Write-Log([string] $Message) {
    Write-Host ('{0} {1}' -f (Get-Date -Format 'HH:mm:ss'), $Message)
}

function Set-Reg([string] $Path, [string] $Name, $Value, [string] $Type = 'DWord') {
    if (-not (Test-Path $Path)) { New-Item -Path $Path -Force | Out-Null }
    New-ItemProperty -Path $Path -Name $Name -Value $Value -PropertyType $Type -Force | Out-Null
}

# ------------------------------------------------------------ auto-logon
Write-Log "auto-logon for $User"
Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;

public static class HvkubeLsa {
    [StructLayout(LayoutKind.Sequential)]
    struct LSA_UNICODE_STRING { public ushort Length; public ushort MaximumLength; public IntPtr Buffer; }

    [StructLayout(LayoutKind.Sequential)]
    struct LSA_OBJECT_ATTRIBUTES {
        public int Length; public IntPtr RootDirectory; public IntPtr ObjectName;
        public uint Attributes; public IntPtr SecurityDescriptor; public IntPtr SecurityQualityOfService;
    }

    [DllImport("advapi32.dll")]
    static extern uint LsaOpenPolicy(IntPtr system, ref LSA_OBJECT_ATTRIBUTES attributes, uint access, out IntPtr handle);
    [DllImport("advapi32.dll")]
    static extern uint LsaStorePrivateData(IntPtr handle, ref LSA_UNICODE_STRING key, ref LSA_UNICODE_STRING data);
    [DllImport("advapi32.dll")]
    static extern uint LsaClose(IntPtr handle);
    [DllImport("advapi32.dll")]
    static extern int LsaNtStatusToWinError(uint status);

    static LSA_UNICODE_STRING Make(string s) {
        LSA_UNICODE_STRING u = new LSA_UNICODE_STRING();
        u.Buffer = Marshal.StringToHGlobalUni(s);
        u.Length = (ushort)(s.Length * 2);
        u.MaximumLength = (ushort)(s.Length * 2 + 2);
        return u;
    }

    public static void Store(string key, string value) {
        LSA_OBJECT_ATTRIBUTES attributes = new LSA_OBJECT_ATTRIBUTES();
        attributes.Length = Marshal.SizeOf(typeof(LSA_OBJECT_ATTRIBUTES));
        IntPtr policy;
        uint status = LsaOpenPolicy(IntPtr.Zero, ref attributes, 0x000F0FFF /* POLICY_ALL_ACCESS */, out policy);
        if (status != 0) throw new System.ComponentModel.Win32Exception(LsaNtStatusToWinError(status));
        LSA_UNICODE_STRING k = Make(key);
        LSA_UNICODE_STRING d = Make(value);
        try {
            status = LsaStorePrivateData(policy, ref k, ref d);
            if (status != 0) throw new System.ComponentModel.Win32Exception(LsaNtStatusToWinError(status));
        } finally {
            Marshal.ZeroFreeGlobalAllocUnicode(d.Buffer);
            Marshal.FreeHGlobal(k.Buffer);
            LsaClose(policy);
        }
    }
}
'@
[HvkubeLsa]::Store('DefaultPassword', $Password)
$Password = $null
Remove-Item Env:\HVKUBE_AGENT_PASSWORD -ErrorAction SilentlyContinue

$winlogon = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon'
Set-Reg $winlogon 'AutoAdminLogon' '1' 'String'
Set-Reg $winlogon 'DefaultUserName' $User 'String'
Set-Reg $winlogon 'DefaultDomainName' '.' 'String'
# Never the plain-text value, and no logon counter that would switch auto-logon off again.
Remove-ItemProperty -Path $winlogon -Name 'DefaultPassword', 'AutoLogonCount' -ErrorAction SilentlyContinue
# Windows 11 may hide password logon for local users ("passwordless"); keep it.
Set-Reg 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\PasswordLess\Device' 'DevicePasswordLessBuildVersion' 0

# ------------------------------------------------------------ RDP
Write-Log 'RDP'
Set-Reg 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server' 'fDenyTSConnections' 0
Set-Reg 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp' 'UserAuthentication' 1
# Rule names, not display groups: display names are localised.
Enable-NetFirewallRule -Name 'RemoteDesktop-UserMode-In-TCP', 'RemoteDesktop-UserMode-In-UDP'

# ------------------------------------------------------------ power, screen saver, lock screen
Write-Log 'power, screen saver, lock screen'
foreach ($setting in 'monitor-timeout-ac', 'standby-timeout-ac', 'hibernate-timeout-ac', 'disk-timeout-ac') {
    & powercfg.exe /change $setting 0
    if ($LASTEXITCODE -ne 0) { throw "powercfg /change $setting failed" }
}
& powercfg.exe /hibernate off
# No password prompt when the console wakes up.
& powercfg.exe /setacvalueindex SCHEME_CURRENT SUB_NONE CONSOLELOCK 0
& powercfg.exe /setactive SCHEME_CURRENT

Set-Reg 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\Personalization' 'NoLockScreen' 1
Set-Reg 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' 'InactivityTimeoutSecs' 0
Set-Reg 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' 'DisableLockWorkstation' 0
# This script runs as the agent user, so HKCU is the agent's own hive.
Set-Reg 'HKCU:\Software\Policies\Microsoft\Windows\Control Panel\Desktop' 'ScreenSaveActive' '0' 'String'
Set-Reg 'HKCU:\Software\Policies\Microsoft\Windows\Control Panel\Desktop' 'ScreenSaverIsSecure' '0' 'String'
Set-Reg 'HKCU:\Control Panel\Desktop' 'ScreenSaveActive' '0' 'String'
Set-Reg 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon' 'EnableFirstLogonAnimation' 0
Set-Reg 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\OOBE' 'DisablePrivacyExperience' 1

# ------------------------------------------------------------ Windows Update
# Updates are the template's business (rebuild it), not the pool VMs'.
Write-Log 'Windows Update: no automatic install or restart'
$au = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU'
Set-Reg $au 'NoAutoUpdate' 0
Set-Reg $au 'AUOptions' 2                      # notify before download
Set-Reg $au 'NoAutoRebootWithLoggedOnUsers' 1
Set-Reg 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate' 'SetAutoRestartNotificationDisable' 1

# ------------------------------------------------------------ Chrome
Write-Log 'Chrome policies and updater'
$chromePolicy = 'HKLM:\SOFTWARE\Policies\Google\Chrome'
Set-Reg $chromePolicy 'DefaultBrowserSettingEnabled' 0
Set-Reg $chromePolicy 'MetricsReportingEnabled' 0
Set-Reg $chromePolicy 'PromotionalTabsEnabled' 0
Set-Reg $chromePolicy 'BrowserSignin' 0
Set-Reg $chromePolicy 'BackgroundModeEnabled' 0
# Pool VMs all run the Chrome the template was built with.
Set-Reg 'HKLM:\SOFTWARE\Policies\Google\Update' 'UpdateDefault' 0
Get-Service -Name 'gupdate*', 'GoogleUpdater*' -ErrorAction SilentlyContinue | ForEach-Object {
    Set-Service -Name $_.Name -StartupType Disabled
}
Get-ScheduledTask -TaskName 'GoogleUpdate*' -ErrorAction SilentlyContinue | Disable-ScheduledTask | Out-Null

# ------------------------------------------------------------ integration services
# Heartbeat, KVP (IP addresses for hvkube), shutdown, time sync, VSS, guest services.
Write-Log 'Hyper-V integration services'
foreach ($name in 'vmicheartbeat', 'vmickvpexchange', 'vmicshutdown', 'vmictimesync', 'vmicvss', 'vmicguestinterface', 'vmicrdv', 'vmicvmsession') {
    $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
    if (-not $svc) { Write-Log "  $name not present"; continue }
    Set-Service -Name $name -StartupType Automatic
}

Write-Log 'agent configuration done'
