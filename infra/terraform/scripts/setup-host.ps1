<#
.SYNOPSIS
    Turns a fresh Windows Server 2022 Azure VM into an hvkube Hyper-V host.

.DESCRIPTION
    Run by the Azure Custom Script Extension (see main.tf) as SYSTEM. Safe to
    run again at any time: every step checks what is already in place first.

    Before the Hyper-V restart:
      1. formats the premium data disk (found by its size) and creates folders
      2. installs the Hyper-V and DHCP Server roles
      3. installs Python (python.org installer, Authenticode-checked),
         hvkube from the wheel URL into a venv, Packer (SHA-256-checked)
         and WinSW (the service wrapper)
    If Hyper-V still needs a restart, the script registers a startup task that
    runs it again with -Resume, schedules the restart and exits 0 so the
    extension reports success. After the restart (or straight away if Hyper-V
    is already active):
      4. points Hyper-V's default paths at the data disk
      5. creates the internal switch, its gateway address, NAT and a DHCP
         scope for the guests
      6. adds the admin user to Hyper-V Administrators
      7. registers "hvkube run" as the Windows service "hvkube", depending on
         vmms (Hyper-V), starts it and removes the startup task

    No password or token is passed to this script. The wheel URL may carry a
    SAS token: it is never logged (the query string is cut off), never passed
    to the startup task and never written to disk.

    Log: C:\ProgramData\hvkube\logs\setup-host.log
    Status: C:\ProgramData\hvkube\logs\setup-status.json
#>
[CmdletBinding()]
param(
    # HTTPS URL of the hvkube wheel. Required on the first run; optional with -Resume.
    [string] $WheelUrl = '',

    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[A-Za-z][A-Za-z0-9._-]{0,19}$')]
    [string] $AdminUser,

    [ValidateRange(64, 4095)]
    [int] $DataDiskSizeGB = 512,

    [ValidatePattern('^[E-Z]$')]
    [string] $DataDriveLetter = 'V',

    [ValidatePattern('^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$')]
    [string] $GuestSubnet = '192.168.100.0/24',

    [ValidatePattern('^\d{1,3}(\.\d{1,3}){3}$')]
    [string] $GuestGateway = '192.168.100.1',

    [ValidatePattern('^\d{1,3}(\.\d{1,3}){3}$')]
    [string] $DhcpStart = '192.168.100.10',

    [ValidatePattern('^\d{1,3}(\.\d{1,3}){3}$')]
    [string] $DhcpEnd = '192.168.100.254',

    [ValidatePattern('^3\.\d+\.\d+$')]
    [string] $PythonVersion = '3.12.10',

    [ValidatePattern('^\d+\.\d+\.\d+$')]
    [string] $PackerVersion = '1.11.2',

    [ValidatePattern('^\d+\.\d+\.\d+$')]
    [string] $WinswVersion = '2.12.0',

    [ValidatePattern('^([0-9A-Fa-f]{64})?$')]
    [string] $WinswSha256 = '',

    # Set by the startup task after the Hyper-V restart.
    [switch] $Resume
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12

# ---------------------------------------------------------------- constants

$SwitchName = 'hvkube-nat'
$NatName = 'hvkube-nat'
$ServiceName = 'hvkube'
$ResumeTaskName = 'hvkube-setup-resume'
$DataLabel = 'hvkube-data'
$HyperVAdminsSid = 'S-1-5-32-578'   # BUILTIN\Hyper-V Administrators, any locale
$AzureDns = '168.63.129.16'

$ProgramDir = Join-Path $env:ProgramFiles 'hvkube'   # administrators-only
$SetupDir = Join-Path $ProgramDir 'setup'
$VenvDir = Join-Path $ProgramDir 'venv'
$ServiceDir = Join-Path $ProgramDir 'service'
$ToolsDir = Join-Path $ProgramDir 'tools'
$StateRoot = Join-Path $env:ProgramData 'hvkube'
$LogDir = Join-Path $StateRoot 'logs'
$DownloadDir = Join-Path $StateRoot 'downloads'
$LogFile = Join-Path $LogDir 'setup-host.log'
$StatusFile = Join-Path $LogDir 'setup-status.json'

$PythonMinor = ($PythonVersion -split '\.')[0..1] -join ''
$PythonDir = Join-Path $env:ProgramFiles "Python$PythonMinor"
$PythonExe = Join-Path $PythonDir 'python.exe'
$VenvPython = Join-Path $VenvDir 'Scripts\python.exe'
$HvkubeExe = Join-Path $VenvDir 'Scripts\hvkube.exe'

$DataRoot = "${DataDriveLetter}:\hvkube"
$HvkubeHome = Join-Path $DataRoot 'state'
$DataFolders = @('state', 'templates', 'vms', 'iso', 'packer') | ForEach-Object { Join-Path $DataRoot $_ }

# ---------------------------------------------------------------- helpers

# The log folder must exist before the first log line.
New-Item -ItemType Directory -Force -Path $LogDir | Out-Null

function Write-Log {
    param([Parameter(Mandatory = $true)] [AllowEmptyString()] [string] $Message)
    $line = '{0} {1}' -f (Get-Date -Format 'yyyy-MM-ddTHH:mm:ss.fffK'), $Message
    Add-Content -Path $LogFile -Value $line -Encoding UTF8
    # Write-Host, not Write-Output: log lines must never become a function's return value.
    Write-Host $line
}

function Set-Status {
    param([string] $State, [string] $Detail = '')
    $status = [ordered]@{
        state   = $State
        detail  = $Detail
        time    = (Get-Date).ToUniversalTime().ToString('o')
        service = $ServiceName
        switch  = $SwitchName
        data    = $DataRoot
    }
    $status | ConvertTo-Json | Set-Content -Path $StatusFile -Encoding UTF8
}

function Invoke-Step {
    param([Parameter(Mandatory = $true)] [string] $Name, [Parameter(Mandatory = $true)] [scriptblock] $Body)
    Write-Log "step: $Name"
    $watch = [Diagnostics.Stopwatch]::StartNew()
    try {
        & $Body
    } catch {
        Write-Log "step failed: $Name after $([int]$watch.Elapsed.TotalSeconds) s: $($_.Exception.Message)"
        throw
    }
    Write-Log "step done: $Name ($([int]$watch.Elapsed.TotalSeconds) s)"
}

# Runs a program, logs its output line by line, fails on a non-zero exit code.
# Windows PowerShell turns native stderr into errors under 'Stop', so relax it here.
function Invoke-Native {
    param(
        [Parameter(Mandatory = $true)] [string] $FilePath,
        [string[]] $ArgumentList = @(),
        [int[]] $AllowedExitCodes = @(0)
    )
    $ErrorActionPreference = 'Continue'
    Write-Log "  run: $(Split-Path -Leaf $FilePath) $($ArgumentList -join ' ')"
    & $FilePath @ArgumentList 2>&1 | ForEach-Object { Write-Log "    $_" }
    $code = $LASTEXITCODE
    if ($AllowedExitCodes -notcontains $code) {
        throw "$(Split-Path -Leaf $FilePath) exited with code $code"
    }
}

# Runs a program and returns its standard output (stderr is dropped).
function Get-NativeOutput {
    param([Parameter(Mandatory = $true)] [string] $FilePath, [string[]] $ArgumentList = @())
    $ErrorActionPreference = 'Continue'
    return @(& $FilePath @ArgumentList 2>$null | ForEach-Object { "$_" })
}

# A URL fit for the log: scheme, host and path, never the query string (SAS tokens).
function Get-SafeUrl {
    param([string] $Url)
    $uri = [Uri]$Url
    return '{0}://{1}{2}' -f $uri.Scheme, $uri.Host, $uri.AbsolutePath
}

function Get-RemoteFile {
    param([Parameter(Mandatory = $true)] [string] $Url, [Parameter(Mandatory = $true)] [string] $OutFile)
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $OutFile) | Out-Null
    for ($attempt = 1; $attempt -le 4; $attempt++) {
        try {
            Write-Log "  download: $(Get-SafeUrl $Url) -> $OutFile (attempt $attempt)"
            Invoke-WebRequest -Uri $Url -OutFile $OutFile -UseBasicParsing
            return
        } catch {
            if ($attempt -eq 4) { throw "download of $(Get-SafeUrl $Url) failed: $($_.Exception.Message)" }
            Start-Sleep -Seconds (10 * $attempt)
        }
    }
}

function Assert-Sha256 {
    param([string] $Path, [string] $Expected)
    $actual = (Get-FileHash -Algorithm SHA256 -Path $Path).Hash
    if ($actual -ne $Expected.ToUpperInvariant()) {
        Remove-Item -Force $Path
        throw "SHA-256 mismatch for ${Path}: expected $Expected, got $actual"
    }
}

function Assert-Signed {
    param([string] $Path, [string] $SignerPattern)
    $sig = Get-AuthenticodeSignature -FilePath $Path
    if ($sig.Status -ne 'Valid' -or $sig.SignerCertificate.Subject -notmatch $SignerPattern) {
        Remove-Item -Force $Path
        throw "bad Authenticode signature on ${Path}: status $($sig.Status), signer '$($sig.SignerCertificate.Subject)'"
    }
}

function Add-MachinePath {
    param([string] $Dir)
    $current = [Environment]::GetEnvironmentVariable('Path', 'Machine')
    if (($current -split ';') -notcontains $Dir) {
        [Environment]::SetEnvironmentVariable('Path', "$current;$Dir", 'Machine')
        Write-Log "  added $Dir to the machine PATH"
    }
    if (($env:Path -split ';') -notcontains $Dir) { $env:Path = "$env:Path;$Dir" }
}

function ConvertTo-SubnetMask {
    param([int] $PrefixLength)
    $bits = ([uint64]0xFFFFFFFF -shl (32 - $PrefixLength)) -band 0xFFFFFFFF
    $bytes = [BitConverter]::GetBytes([uint32]$bits)
    [Array]::Reverse($bytes)
    return ([Net.IPAddress]$bytes).ToString()
}

# ---------------------------------------------------------------- steps

function Initialize-Folders {
    foreach ($dir in @($ProgramDir, $SetupDir, $ServiceDir, $ToolsDir, $StateRoot, $LogDir, $DownloadDir)) {
        New-Item -ItemType Directory -Force -Path $dir | Out-Null
    }
    # Keep a copy of this script where the startup task expects it.
    $self = Join-Path $SetupDir 'setup-host.ps1'
    if ($PSCommandPath -and ((Resolve-Path $PSCommandPath).Path -ne $self)) {
        Copy-Item -Force -Path $PSCommandPath -Destination $self
    }
}

function Initialize-DataDisk {
    $volume = Get-Volume -ErrorAction SilentlyContinue | Where-Object { $_.FileSystemLabel -eq $DataLabel }
    if (-not $volume) {
        $candidates = @(Get-Disk | Where-Object {
                $_.PartitionStyle -eq 'RAW' -and [math]::Round($_.Size / 1GB) -eq $DataDiskSizeGB
            })
        if ($candidates.Count -ne 1) {
            throw "expected exactly one empty $DataDiskSizeGB GiB data disk, found $($candidates.Count)"
        }
        $disk = $candidates[0]
        Write-Log "  initialising disk $($disk.Number) ($DataDiskSizeGB GiB)"
        if ($disk.IsOffline) { Set-Disk -Number $disk.Number -IsOffline $false }
        if ($disk.IsReadOnly) { Set-Disk -Number $disk.Number -IsReadOnly $false }
        Initialize-Disk -Number $disk.Number -PartitionStyle GPT
        $partition = New-Partition -DiskNumber $disk.Number -UseMaximumSize
        # 64 KiB clusters suit large VHDX and saved-memory files.
        Format-Volume -Partition $partition -FileSystem NTFS -AllocationUnitSize 65536 `
            -NewFileSystemLabel $DataLabel -Confirm:$false | Out-Null
        $volume = Get-Volume | Where-Object { $_.FileSystemLabel -eq $DataLabel }
    } else {
        Write-Log "  data volume '$DataLabel' already formatted"
    }
    if ([string]$volume.DriveLetter -ne $DataDriveLetter) {
        if (Get-Volume -DriveLetter $DataDriveLetter -ErrorAction SilentlyContinue) {
            throw "drive letter ${DataDriveLetter}: is taken by another volume"
        }
        Get-Partition -Volume $volume | Set-Partition -NewDriveLetter $DataDriveLetter
        Write-Log "  data volume mounted as ${DataDriveLetter}:"
    }
    foreach ($dir in @($DataRoot) + $DataFolders) {
        New-Item -ItemType Directory -Force -Path $dir | Out-Null
    }
    # Operators in Hyper-V Administrators use hvkube without elevation: let
    # them write the shared state and VM folders.
    Invoke-Native -FilePath 'icacls.exe' -ArgumentList @($DataRoot, '/grant', "*${HyperVAdminsSid}:(OI)(CI)M", '/Q')
}

# Returns $true when a restart is still needed before Hyper-V can be used.
function Install-Roles {
    $restart = $false
    foreach ($feature in @('Hyper-V', 'DHCP')) {
        $state = (Get-WindowsFeature -Name $feature).InstallState
        if ($state -eq 'Installed') {
            Write-Log "  $feature already installed"
            continue
        }
        if ($state -ne 'InstallPending') {
            Write-Log "  installing $feature"
            try {
                $result = Install-WindowsFeature -Name $feature -IncludeManagementTools
            } catch {
                if ($feature -eq 'Hyper-V') {
                    throw "Hyper-V could not be installed ($($_.Exception.Message)). The VM size must support nested virtualization (Dsv3-v5, Esv3-v5)."
                }
                throw
            }
            if (-not $result.Success) { throw "installing $feature failed" }
            if ([string]$result.RestartNeeded -eq 'Yes') { $restart = $true }
        }
        if ((Get-WindowsFeature -Name $feature).InstallState -eq 'InstallPending') { $restart = $true }
    }
    if (-not (Get-Service -Name vmms -ErrorAction SilentlyContinue)) { $restart = $true }
    return $restart
}

function Install-Python {
    if (Test-Path $PythonExe) {
        $installed = (Get-NativeOutput -FilePath $PythonExe -ArgumentList @('-c', 'import platform; print(platform.python_version())')) -join ''
        if ($installed -eq $PythonVersion) {
            Write-Log "  Python $installed already installed in $PythonDir"
            return
        }
        Write-Log "  Python $installed found, installing $PythonVersion"
    }
    $installer = Join-Path $DownloadDir "python-$PythonVersion-amd64.exe"
    Get-RemoteFile -Url "https://www.python.org/ftp/python/$PythonVersion/python-$PythonVersion-amd64.exe" -OutFile $installer
    Assert-Signed -Path $installer -SignerPattern 'Python Software Foundation'
    Invoke-Native -FilePath $installer -ArgumentList @(
        '/quiet', 'InstallAllUsers=1', 'PrependPath=0', 'Include_test=0', 'Include_doc=0',
        'Include_launcher=0', "TargetDir=$PythonDir", '/log', (Join-Path $LogDir 'python-install.log')
    ) -AllowedExitCodes @(0, 3010)
    if (-not (Test-Path $PythonExe)) { throw "Python was not installed to $PythonDir" }
}

function Install-Hvkube {
    if (-not (Test-Path $VenvPython)) {
        Invoke-Native -FilePath $PythonExe -ArgumentList @('-m', 'venv', $VenvDir)
    }
    if ($WheelUrl) {
        $uri = [Uri]$WheelUrl
        if ($uri.Scheme -ne 'https') { throw 'the wheel URL must use https' }
        $wheelName = [Uri]::UnescapeDataString($uri.Segments[-1])
        if ($wheelName -notmatch '^hvkube-[^\\/]+\.whl$') { throw "the wheel URL must end in an hvkube wheel file name, got '$wheelName'" }
        $wheel = Join-Path $DownloadDir $wheelName
        Get-RemoteFile -Url $WheelUrl -OutFile $wheel
        Invoke-Native -FilePath $VenvPython -ArgumentList @('-m', 'pip', 'install', '--disable-pip-version-check', '--upgrade', 'pip')
        Invoke-Native -FilePath $VenvPython -ArgumentList @('-m', 'pip', 'install', '--disable-pip-version-check', '--upgrade', $wheel)
    } elseif (-not (Test-Path $HvkubeExe)) {
        throw 'hvkube is not installed and no -WheelUrl was given'
    } else {
        Write-Log '  no wheel URL given; keeping the installed hvkube'
    }
    if (-not (Test-Path $HvkubeExe)) { throw "the wheel did not install $HvkubeExe" }
    [Environment]::SetEnvironmentVariable('HVKUBE_DATA_DIR', $HvkubeHome, 'Machine')
    $env:HVKUBE_DATA_DIR = $HvkubeHome
    Add-MachinePath (Join-Path $VenvDir 'Scripts')
}

function Install-Packer {
    $packerExe = Join-Path $ToolsDir 'packer.exe'
    if (Test-Path $packerExe) {
        $env:CHECKPOINT_DISABLE = '1'
        $installed = (Get-NativeOutput -FilePath $packerExe -ArgumentList @('version')) | Select-Object -First 1
        if ($installed -match [regex]::Escape($PackerVersion)) {
            Write-Log "  $installed already installed"
            Add-MachinePath $ToolsDir
            return
        }
    }
    $base = "https://releases.hashicorp.com/packer/$PackerVersion"
    $zipName = "packer_${PackerVersion}_windows_amd64.zip"
    $zip = Join-Path $DownloadDir $zipName
    $sums = Join-Path $DownloadDir "packer_${PackerVersion}_SHA256SUMS"
    Get-RemoteFile -Url "$base/$zipName" -OutFile $zip
    Get-RemoteFile -Url "$base/packer_${PackerVersion}_SHA256SUMS" -OutFile $sums
    $line = Get-Content $sums | Where-Object { $_ -match "\s$([regex]::Escape($zipName))$" } | Select-Object -First 1
    if (-not $line) { throw "no checksum for $zipName in the SHA256SUMS file" }
    Assert-Sha256 -Path $zip -Expected ($line -split '\s+')[0]
    Expand-Archive -Path $zip -DestinationPath $ToolsDir -Force
    Add-MachinePath $ToolsDir
}

function Get-Winsw {
    $download = Join-Path $DownloadDir "WinSW-x64-$WinswVersion.exe"
    if (-not (Test-Path $download)) {
        Get-RemoteFile -Url "https://github.com/winsw/winsw/releases/download/v$WinswVersion/WinSW-x64.exe" -OutFile $download
    }
    if ($WinswSha256) {
        Assert-Sha256 -Path $download -Expected $WinswSha256
    } else {
        $hash = (Get-FileHash -Algorithm SHA256 -Path $download).Hash
        Write-Log "  WARNING: WinSW hash not pinned; downloaded file has SHA-256 $hash (set winsw_sha256 to enforce it)"
    }
    return $download
}

function Register-ResumeTask {
    $script = Join-Path $SetupDir 'setup-host.ps1'
    # Only non-secret parameters are forwarded; -WheelUrl never is.
    $forward = @(
        '-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass',
        '-File', "`"$script`"", '-Resume',
        '-AdminUser', $AdminUser, '-DataDiskSizeGB', $DataDiskSizeGB, '-DataDriveLetter', $DataDriveLetter,
        '-GuestSubnet', $GuestSubnet, '-GuestGateway', $GuestGateway, '-DhcpStart', $DhcpStart, '-DhcpEnd', $DhcpEnd,
        '-PythonVersion', $PythonVersion, '-PackerVersion', $PackerVersion, '-WinswVersion', $WinswVersion
    )
    if ($WinswSha256) { $forward += @('-WinswSha256', $WinswSha256) }
    $action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ($forward -join ' ')
    $trigger = New-ScheduledTaskTrigger -AtStartup
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    $settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Hours 2)
    Register-ScheduledTask -TaskName $ResumeTaskName -Action $action -Trigger $trigger `
        -Principal $principal -Settings $settings -Force | Out-Null
    Write-Log "  registered startup task '$ResumeTaskName'"
}

function Wait-Vmms {
    $deadline = (Get-Date).AddMinutes(10)
    while ($true) {
        $svc = Get-Service -Name vmms -ErrorAction SilentlyContinue
        if ($svc -and $svc.Status -eq 'Running') { return }
        if ($svc -and $svc.Status -eq 'Stopped') { Start-Service -Name vmms -ErrorAction SilentlyContinue }
        if ((Get-Date) -gt $deadline) { throw 'the Hyper-V management service (vmms) did not start within 10 minutes' }
        Start-Sleep -Seconds 5
    }
}

function Set-HyperVDefaults {
    $vmDir = Join-Path $DataRoot 'vms'
    Set-VMHost -VirtualHardDiskPath $vmDir -VirtualMachinePath $vmDir -EnableEnhancedSessionMode $true
    Write-Log "  Hyper-V default paths: $vmDir"
}

function Initialize-GuestNetwork {
    $networkAddress, $prefixText = $GuestSubnet -split '/'
    $prefixLength = [int]$prefixText

    if (-not (Get-VMSwitch -Name $SwitchName -ErrorAction SilentlyContinue)) {
        New-VMSwitch -Name $SwitchName -SwitchType Internal | Out-Null
        Write-Log "  created internal switch '$SwitchName'"
    }
    $adapter = Get-NetAdapter -Name "vEthernet ($SwitchName)"

    $addresses = @(Get-NetIPAddress -InterfaceIndex $adapter.ifIndex -AddressFamily IPv4 -ErrorAction SilentlyContinue)
    if (-not ($addresses | Where-Object { $_.IPAddress -eq $GuestGateway -and $_.PrefixLength -eq $prefixLength })) {
        $addresses | Remove-NetIPAddress -Confirm:$false -ErrorAction SilentlyContinue
        New-NetIPAddress -InterfaceIndex $adapter.ifIndex -IPAddress $GuestGateway -PrefixLength $prefixLength | Out-Null
        Write-Log "  gateway $GuestGateway/$prefixLength on vEthernet ($SwitchName)"
    }

    $nat = Get-NetNat -Name $NatName -ErrorAction SilentlyContinue
    if ($nat -and $nat.InternalIPInterfaceAddressPrefix -ne $GuestSubnet) {
        throw "NAT '$NatName' exists for $($nat.InternalIPInterfaceAddressPrefix), not $GuestSubnet; remove it (Remove-NetNat) and rerun"
    }
    if (-not $nat) {
        New-NetNat -Name $NatName -InternalIPInterfaceAddressPrefix $GuestSubnet | Out-Null
        Write-Log "  NAT '$NatName' for $GuestSubnet"
    }

    # DHCP for the guests: pool VMs and the Packer build get addresses here.
    # Long leases: a VM parked in Saved for days should come back with the
    # same address.
    $scope = Get-DhcpServerv4Scope -ScopeId $networkAddress -ErrorAction SilentlyContinue
    if (-not $scope) {
        Add-DhcpServerv4Scope -Name 'hvkube guests' -StartRange $DhcpStart -EndRange $DhcpEnd `
            -SubnetMask (ConvertTo-SubnetMask $prefixLength) -LeaseDuration (New-TimeSpan -Days 30) -State Active
        Write-Log "  DHCP scope $DhcpStart-$DhcpEnd"
    }
    Set-DhcpServerv4OptionValue -ScopeId $networkAddress -Router $GuestGateway -DnsServer $AzureDns -Force
    # Serve DHCP on the guest switch only, never on the Azure NIC.
    foreach ($binding in @(Get-DhcpServerv4Binding)) {
        $wanted = $binding.InterfaceAlias -eq "vEthernet ($SwitchName)"
        if ($binding.BindingState -ne $wanted) {
            Set-DhcpServerv4Binding -InterfaceAlias $binding.InterfaceAlias -BindingState $wanted | Out-Null
        }
    }
    # Tell Server Manager the DHCP role is configured (no domain to authorise in).
    $roleKey = 'HKLM:\SOFTWARE\Microsoft\ServerManager\Roles\12'
    if (Test-Path $roleKey) { Set-ItemProperty -Path $roleKey -Name ConfigurationState -Value 2 }
    Set-Service -Name DHCPServer -StartupType Automatic
    Restart-Service -Name DHCPServer
}

function Add-HyperVAdministrator {
    $members = @(Get-LocalGroupMember -SID $HyperVAdminsSid -ErrorAction SilentlyContinue)
    if ($members | Where-Object { ($_.Name -split '\\')[-1] -eq $AdminUser }) {
        Write-Log "  $AdminUser is already in Hyper-V Administrators"
        return
    }
    Add-LocalGroupMember -SID $HyperVAdminsSid -Member $AdminUser
    Write-Log "  added $AdminUser to Hyper-V Administrators"
}

function Install-HvkubeService {
    param([Parameter(Mandatory = $true)] [string] $WinswDownload)
    $wrapper = Join-Path $ServiceDir 'hvkube-service.exe'
    $config = Join-Path $ServiceDir 'hvkube-service.xml'
    $serviceLogs = Join-Path $LogDir 'service'
    New-Item -ItemType Directory -Force -Path $serviceLogs | Out-Null

    # "hvkube run" is the controller loop. It starts after Hyper-V (vmms),
    # restarts when it fails, and gets Ctrl+C (then a kill after 60 s) on stop.
    $xml = @"
<service>
  <id>$ServiceName</id>
  <name>hvkube controller</name>
  <description>Keeps hvkube pools of Hyper-V VMs at their declared size (hvkube run).</description>
  <executable>$HvkubeExe</executable>
  <arguments>run</arguments>
  <workingdirectory>$HvkubeHome</workingdirectory>
  <depend>vmms</depend>
  <startmode>Automatic</startmode>
  <env name="HVKUBE_DATA_DIR" value="$HvkubeHome"/>
  <env name="PYTHONUNBUFFERED" value="1"/>
  <stoptimeout>60 sec</stoptimeout>
  <onfailure action="restart" delay="10 sec"/>
  <onfailure action="restart" delay="60 sec"/>
  <resetfailure>1 hour</resetfailure>
  <logpath>$serviceLogs</logpath>
  <log mode="roll-by-size">
    <sizeThreshold>10240</sizeThreshold>
    <keepFiles>8</keepFiles>
  </log>
</service>
"@
    $existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    $sameConfig = (Test-Path $config) -and ((Get-Content -Raw -Path $config).Trim() -eq $xml.Trim())
    $sameWrapper = (Test-Path $wrapper) -and
        ((Get-FileHash $wrapper).Hash -eq (Get-FileHash $WinswDownload).Hash)

    if ($existing -and -not ($sameConfig -and $sameWrapper)) {
        Write-Log '  service definition changed: reinstalling'
        Stop-Service -Name $ServiceName -ErrorAction SilentlyContinue
        Invoke-Native -FilePath $wrapper -ArgumentList @('uninstall')
        for ($i = 0; $i -lt 30 -and (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue); $i++) {
            Start-Sleep -Seconds 2
        }
        $existing = $null
    }
    if (-not $sameWrapper) { Copy-Item -Force -Path $WinswDownload -Destination $wrapper }
    if (-not $sameConfig) { Set-Content -Path $config -Value $xml -Encoding UTF8 }
    if (-not $existing) {
        Invoke-Native -FilePath $wrapper -ArgumentList @('install')
        Write-Log "  service '$ServiceName' installed"
    }

    $service = Get-Service -Name $ServiceName
    if (-not ($service.ServicesDependedOn | Where-Object { $_.Name -eq 'vmms' })) {
        throw "service '$ServiceName' does not depend on vmms"
    }
    if ($service.Status -ne 'Running') {
        Start-Service -Name $ServiceName
        Write-Log "  service '$ServiceName' started"
    } else {
        Write-Log "  service '$ServiceName' already running"
    }
}

# ---------------------------------------------------------------- main

# One run at a time: the startup task and a re-applied extension may overlap.
$mutex = New-Object Threading.Mutex($false, 'Global\hvkube-setup-host')
try {
    if (-not $mutex.WaitOne([TimeSpan]::FromMinutes(60))) { throw 'another setup run is still going after 60 minutes' }
} catch [Threading.AbandonedMutexException] {
    # A previous run ended without releasing it (restart, crash): ours now.
    Write-Log 'previous setup run ended abruptly; continuing'
}

try {
    Write-Log "setup-host starting (resume: $([bool]$Resume), wheel URL given: $([bool]$WheelUrl))"
    Set-Status -State 'running'

    Invoke-Step 'folders' { Initialize-Folders }
    Invoke-Step 'data disk' { Initialize-DataDisk }
    $needsRestart = $false
    Invoke-Step 'Hyper-V and DHCP roles' { $script:needsRestart = Install-Roles }
    Invoke-Step 'Python' { Install-Python }
    Invoke-Step 'hvkube' { Install-Hvkube }
    Invoke-Step 'Packer' { Install-Packer }
    $winsw = $null
    Invoke-Step 'WinSW' { $script:winsw = Get-Winsw }

    if ($needsRestart) {
        Invoke-Step 'schedule resume after restart' { Register-ResumeTask }
        Set-Status -State 'restarting' -Detail 'Hyper-V needs a restart; setup resumes from a startup task'
        Write-Log 'restarting in 60 s to finish enabling Hyper-V'
        Invoke-Native -FilePath 'shutdown.exe' -ArgumentList @('/r', '/t', '60', '/d', 'p:2:4', '/c', 'hvkube setup: restart to enable Hyper-V')
        exit 0
    }

    Invoke-Step 'wait for Hyper-V' { Wait-Vmms }
    Invoke-Step 'Hyper-V defaults' { Set-HyperVDefaults }
    Invoke-Step 'guest network (switch, NAT, DHCP)' { Initialize-GuestNetwork }
    Invoke-Step 'Hyper-V Administrators' { Add-HyperVAdministrator }
    Invoke-Step 'hvkube service' { Install-HvkubeService -WinswDownload $winsw }

    if (Get-ScheduledTask -TaskName $ResumeTaskName -ErrorAction SilentlyContinue) {
        Unregister-ScheduledTask -TaskName $ResumeTaskName -Confirm:$false
        Write-Log "removed startup task '$ResumeTaskName'"
    }
    Set-Status -State 'complete'
    Write-Log 'setup-host complete'
    exit 0
} catch {
    Write-Log "setup-host FAILED: $($_.Exception.Message)"
    Set-Status -State 'failed' -Detail $_.Exception.Message
    exit 1
} finally {
    try { $mutex.ReleaseMutex() } catch { Write-Log "  mutex release: $($_.Exception.Message)" }
}
